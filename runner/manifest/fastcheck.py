"""A yes/no check of data against our schema, without importing jsonschema (~60–90 ms of start-up).

Most manifests are valid, and a valid one needs no explanation, so `validate` and `create` ask this
first and load jsonschema only to explain a failure. It implements exactly the keywords
`schemas/run.schema.json` uses, with JSON Schema 2020-12 semantics; any other keyword raises
`Unsupported` and the caller falls back to jsonschema. tests/unit/test_fastcheck.py proves it agrees
with jsonschema on the whole corpus and on generated documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

ANNOTATIONS = frozenset({"description", "title", "examples", "default", "$comment", "$schema", "$id", "$defs",
                         "x-runner-extension", "deprecated"})


class Unsupported(Exception):
    """The schema uses a keyword this checker does not implement."""


def is_valid(schema: Mapping[str, Any], instance: Any) -> bool:
    return _Checker(schema).valid(schema, instance)


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def json_type(value: Any) -> str:
    """The JSON Schema type name of a loaded YAML value (booleans are not integers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "unknown"


def _is_type(value: Any, wanted: str) -> bool:
    actual = json_type(value)
    if wanted == "number":
        return actual in ("integer", "number")
    if wanted == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == wanted


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _number(value: Any) -> bool:
    return json_type(value) in ("integer", "number")


class _Checker:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.keywords: dict[str, Callable[[Any, Any, Mapping[str, Any]], bool]] = {
            "$ref": self._ref, "type": self._type, "enum": self._enum, "const": self._const,
            "properties": self._properties, "patternProperties": self._pattern_properties,
            "additionalProperties": self._additional, "required": self._required,
            "propertyNames": self._property_names, "minProperties": self._min_properties,
            "maxProperties": self._max_properties, "items": self._items, "minItems": self._min_items,
            "pattern": self._pattern, "minLength": self._min_length, "minimum": self._minimum,
            "maximum": self._maximum, "exclusiveMinimum": self._exclusive_minimum, "anyOf": self._any_of,
            "oneOf": self._one_of, "allOf": self._all_of, "not": self._not, "if": self._if,
            "then": self._always, "else": self._always,
        }

    def valid(self, schema: Any, instance: Any) -> bool:
        if schema is True:
            return True
        if schema is False:
            return False
        for keyword, value in schema.items():
            if keyword in ANNOTATIONS:
                continue
            check = self.keywords.get(keyword)
            if check is None:
                raise Unsupported(keyword)
            if not check(value, instance, schema):
                return False
        return True

    @staticmethod
    def _always(value: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return True  # evaluated by the keyword they belong to (properties/additionalProperties, if)

    def _ref(self, ref: str, instance: Any, schema: Mapping[str, Any]) -> bool:
        if not ref.startswith("#/"):
            raise Unsupported(f"$ref {ref}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return self.valid(node, instance)

    @staticmethod
    def _type(wanted: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        kinds = wanted if isinstance(wanted, list) else [wanted]
        return any(_is_type(instance, kind) for kind in kinds)

    @staticmethod
    def _enum(values: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return any(_equal(instance, value) for value in values)

    @staticmethod
    def _const(value: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return _equal(instance, value)

    def _properties(self, properties: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        if not isinstance(instance, dict):
            return True
        return all(self.valid(sub, instance[key]) for key, sub in properties.items() if key in instance)

    def _pattern_properties(self, patterns: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        if not isinstance(instance, dict):
            return True
        return all(self.valid(sub, value) for text, sub in patterns.items()
                   for key, value in instance.items() if _pattern(text).search(key))

    def _additional(self, additional: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        if not isinstance(instance, dict):
            return True
        known = schema.get("properties", {})
        patterns = [_pattern(text) for text in schema.get("patternProperties", {})]
        return all(self.valid(additional, value) for key, value in instance.items()
                   if key not in known and not any(p.search(key) for p in patterns))

    @staticmethod
    def _required(keys: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, dict) or all(key in instance for key in keys)

    def _property_names(self, sub: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, dict) or all(self.valid(sub, key) for key in instance)

    @staticmethod
    def _min_properties(count: int, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, dict) or len(instance) >= count

    @staticmethod
    def _max_properties(count: int, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, dict) or len(instance) <= count

    def _items(self, sub: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, list) or all(self.valid(sub, item) for item in instance)

    @staticmethod
    def _min_items(count: int, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, list) or len(instance) >= count

    @staticmethod
    def _pattern(text: str, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, str) or _pattern(text).search(instance) is not None

    @staticmethod
    def _min_length(count: int, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not isinstance(instance, str) or len(instance) >= count

    @staticmethod
    def _minimum(bound: float, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not _number(instance) or instance >= bound

    @staticmethod
    def _maximum(bound: float, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not _number(instance) or instance <= bound

    @staticmethod
    def _exclusive_minimum(bound: float, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not _number(instance) or instance > bound

    def _any_of(self, subs: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return any(self.valid(sub, instance) for sub in subs)

    def _one_of(self, subs: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return sum(1 for sub in subs if self.valid(sub, instance)) == 1

    def _all_of(self, subs: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return all(self.valid(sub, instance) for sub in subs)

    def _not(self, sub: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        return not self.valid(sub, instance)

    def _if(self, condition: Any, instance: Any, schema: Mapping[str, Any]) -> bool:
        branch = "then" if self.valid(condition, instance) else "else"
        return branch not in schema or self.valid(schema[branch], instance)
