"""Schema validation that reports every problem in plain language, located and with a fix.

`schemas/run.schema.json` is the contract. jsonschema's own messages embed instance values and
pick confusing branches of `oneOf`, so problems are rebuilt here from the error's path, keyword
and schema: "unknown key 'imgae' — did you mean 'image'?", "expected a string, got a number —
quote it: ref: \"1.10\"". Values are echoed only outside `env` and only when short.

Before the schema runs, two checks give one specific message instead of a wall of errors: files
that are not Run manifests (VESSL service revisions, pipelines, 2023 legacy syntax) and keys that
ask for privileges runner never grants (a policy refusal, exit 4).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from runner.manifest.fastcheck import Unsupported, is_valid, json_type
from runner.manifest.giturl import redact_url
from runner.manifest.load import LoadedDocument
from runner.manifest.problems import JsonPath, Problem

MAX_ECHO_CHARS = 60
PRIVILEGE_KEYS = {
    "privileged": "privileged containers",
    "network_mode": "host or custom network modes",
    "network": "custom networks",
    "pid": "sharing the host PID namespace",
    "ipc": "sharing the host IPC namespace",
    "uts": "sharing the host UTS namespace",
    "userns_mode": "changing the user namespace",
    "cap_add": "extra Linux capabilities",
    "devices": "host devices (GPUs are requested through resources)",
    "security_opt": "changing security options",
    "sysctls": "kernel parameters",
    "volumes_from": "mounting another container's volumes",
    "user": "choosing the container user",
    "runtime": "choosing the container runtime",
}
_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "object": "a mapping", "array": "a list", "null": "nothing (null)",
}


SCHEMA_FILE = Path(__file__).resolve().parent.parent / "data" / "run.schema.json"


@cache
def load_schema() -> dict[str, Any]:
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def foreign_format_problem(document: LoadedDocument) -> Problem | None:
    """One specific problem when the file is not a Run manifest at all, else None."""
    data = document.data
    keys = set(data)
    if keys & {"service", "autoscaling", "launch_immediately"}:
        return Problem(
            (), "this is a VESSL Service revision (`vessl service create -f`), not a Run manifest",
            hint="runner executes Run manifests: drop `service:`/`autoscaling:`/`message:`; "
            "keep name, image, resources, import, run, ports and env",
            position=document.position_of(("service",), key=True) or document.position_of(()),
        )
    if "steps" in keys and ("api_version" in keys or "variables" in keys):
        return Problem(
            (), "this is a VESSL Pipeline, not a Run manifest",
            hint="save one step's `spec.run_spec` as its own file and run that with runner",
            position=document.position_of(("steps",), key=True),
        )
    return _legacy_problem(document)


def _legacy_problem(document: LoadedDocument) -> Problem | None:
    """Top-level `volumes:` marks VESSL's 2023 syntax, which a modern manifest never contains.

    The 2023 `interactive: {runtime, ports}` spelling alone is still accepted (with a warning from
    the model builder), since it carries over unambiguously.
    """
    if "volumes" not in document.data:
        return None
    return Problem(
        ("volumes",), "this uses VESSL's 2023 legacy Run syntax",
        hint="`volumes:` became `import:` (inputs such as git://… or vessl-model://…) and `export:` "
        "(outputs: `{artifact: true}` became vessl-artifact://); `resources.accelerators` may stay",
        position=document.position_of(("volumes",), key=True),
    )


def privilege_problems(document: LoadedDocument) -> list[Problem]:
    """Keys asking for privileges, at the top level or under `resources` (exit 4)."""
    problems: list[Problem] = []
    for parent in ((), ("resources",)):
        container = document.data if not parent else document.data.get(parent[0])
        if not isinstance(container, dict):
            continue
        for key in container:
            if key in PRIVILEGE_KEYS:
                path = (*parent, key)
                what = PRIVILEGE_KEYS[key]
                subject = what.split(" (")[0].split()
                plural = subject[-1].endswith("s") and not subject[0].endswith("ing")
                problems.append(Problem(
                    path, f"{what} {'are' if plural else 'is'} refused by policy",
                    hint="runner never grants privileges; remove the key (GPUs come from `resources`)",
                    position=document.position_of(path, key=True), policy=True,
                ))
    return problems


def schema_problems(document: LoadedDocument, skip_keys: Iterable[JsonPath] = ()) -> list[Problem]:
    """Every schema violation as a located problem (paths in `skip_keys` already reported)."""
    try:
        if is_valid(load_schema(), document.data):
            return []  # the common case needs no explanation, so jsonschema is not even imported
    except Unsupported:
        pass
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema())
    skipped = set(skip_keys)
    problems: list[Problem] = []
    for error in validator.iter_errors(document.data):
        for problem in _explain(error, document):
            if problem.path not in skipped:
                problems.append(problem)
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[JsonPath, str]] = set()
    unique = []
    for problem in problems:
        key = (problem.path, problem.message)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique


def _explain(error: Any, document: LoadedDocument) -> Iterator[Problem]:
    path: JsonPath = tuple(error.absolute_path)
    keyword = error.validator
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        # jsonschema reports a bad key as an error about the key string, at the mapping's path.
        yield Problem(path, f"invalid name {_echo(error.instance, ())}", hint=_describe_schema(error.schema),
                      position=document.position_of((*path, error.instance), key=True))
        return
    if keyword == "additionalProperties" or (keyword == "unevaluatedProperties"):
        yield from _unknown_keys(error, document, path)
    elif keyword == "propertyNames":
        yield from _bad_key_names(error, document, path)
    elif keyword in ("oneOf", "anyOf"):
        yield from _alternatives(error, document, path)
    elif keyword == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        for key in missing:
            yield _located(document, path, f"missing required key {key!r}", hint=_describe(error.schema, key))
    else:
        yield _located(document, path, _message(error, path), hint=_hint(error, document, path))


def _located(document: LoadedDocument, path: JsonPath, message: str, *, hint: str | None = None,
             key: bool = False) -> Problem:
    return Problem(path, message, hint=hint, position=document.position_of(path, key=key))


def _unknown_keys(error: Any, document: LoadedDocument, path: JsonPath) -> Iterator[Problem]:
    schema = error.schema
    known = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    import re

    for key in error.instance:
        if key in known or any(re.search(pattern, key) for pattern in patterns):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else _allowed_keys_hint(known)
        yield _located(document, (*path, key), f"unknown key {key!r}", hint=hint, key=True)


def _bad_key_names(error: Any, document: LoadedDocument, path: JsonPath) -> Iterator[Problem]:
    names = error.schema.get("propertyNames", {})
    description = names.get("description") if isinstance(names, dict) else None
    for key in error.instance:
        sub = error.schema.get("propertyNames")
        from jsonschema import Draft202012Validator

        if sub is not None and not Draft202012Validator(sub).is_valid(key):
            yield _located(document, (*path, key), f"invalid key {_echo(key, path)}",
                           hint=description, key=True)


def _allowed_keys_hint(known: list[str]) -> str | None:
    if not known:
        return None
    return "allowed here: " + ", ".join(sorted(known))


def _alternatives(error: Any, document: LoadedDocument, path: JsonPath) -> Iterator[Problem]:
    """Pick the branch meant by the instance's type; explain its errors, else list the forms."""
    instance_type = json_type(error.instance)
    by_branch: dict[int, list[Any]] = {}
    for sub in error.context or ():
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    branches = error.validator_value
    matching = [index for index, branch in enumerate(branches) if _branch_accepts_type(branch, instance_type)]
    if len(matching) == 1 and by_branch.get(matching[0]):
        for sub in by_branch[matching[0]]:
            yield from _explain(sub, document)
        return
    if len(matching) > 1:
        best = min((by_branch.get(i, []) for i in matching), key=_error_depth_key, default=[])
        if best:
            for sub in best:
                yield from _explain(sub, document)
            return
    forms = [_branch_title(branch) for branch in branches]
    takes_string = any(_branch_accepts_type(branch, "string") and isinstance(branch, dict) and
                       ("type" in branch or "$ref" in branch) for branch in branches)
    hint = _quote_hint(document, path, error.instance) if takes_string else None
    yield _located(document, path, f"expected {_join_or(forms)}, got {_type_word(instance_type)}",
                   hint=hint or _describe_schema(error.schema))


def _error_depth_key(errors: list[Any]) -> tuple[int, int]:
    """Prefer the branch whose errors are deepest (it matched furthest), then the fewest."""
    if not errors:
        return (0, 0)
    return (-max(len(e.absolute_path) for e in errors), len(errors))


def _branch_accepts_type(branch: Any, instance_type: str) -> bool:
    if not isinstance(branch, dict):
        return False
    declared = branch.get("type")
    if declared is None:
        ref = branch.get("$ref")
        if ref:
            declared = _resolve_ref(ref).get("type")
    if declared is None:
        return True
    types = declared if isinstance(declared, list) else [declared]
    return instance_type in types or (instance_type == "integer" and "number" in types)


def _resolve_ref(ref: str) -> Mapping[str, Any]:
    node: Any = load_schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _branch_title(branch: Any) -> str:
    if isinstance(branch, dict):
        target = _resolve_ref(branch["$ref"]) if "$ref" in branch else branch
        if target.get("title"):
            return str(target["title"])
        declared = target.get("type")
        if isinstance(declared, str):
            return _type_word(declared)
    return "another form"


def _join_or(items: list[str]) -> str:
    unique = list(dict.fromkeys(items))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " or " + unique[-1]


def _type_word(type_name: str) -> str:
    return _TYPE_WORDS.get(type_name, type_name)


def _message(error: Any, path: JsonPath) -> str:
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        expected = value if isinstance(value, list) else [value]
        return f"expected {_join_or([_type_word(t) for t in expected])}, got {_type_word(json_type(instance))}"
    if keyword == "enum":
        choices = ", ".join('""' if choice == "" else str(choice) for choice in value)
        return f"{_echo(instance, path)} is not one of: {choices}"
    if keyword == "const":
        return f"must be {value!r}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bounds = _bounds(error.schema)
        return f"{_echo(instance, path)} is out of range{bounds}"
    if keyword == "pattern":
        return f"{_echo(instance, path)} is not in the expected format"
    if keyword in ("minLength", "maxLength"):
        return f"must be {'at least' if keyword == 'minLength' else 'at most'} {value} characters long"
    if keyword in ("minItems", "maxItems"):
        return f"must have {'at least' if keyword == 'minItems' else 'at most'} {value} items"
    if keyword in ("minProperties", "maxProperties"):
        return f"must have {'at least' if keyword == 'minProperties' else 'at most'} {value} keys"
    if keyword == "not":
        return "this form is not allowed here"
    if keyword == "false" or value is False:
        return "not allowed here"
    return f"invalid value ({keyword})"


def _bounds(schema: Mapping[str, Any]) -> str:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is not None and high is not None:
        return f" ({low}–{high})"
    if low is not None:
        return f" (minimum {low})"
    return f" (maximum {high})" if high is not None else ""


def _hint(error: Any, document: LoadedDocument, path: JsonPath) -> str | None:
    keyword = error.validator
    if keyword == "type" and "string" in (error.validator_value if isinstance(error.validator_value, list)
                                         else [error.validator_value]):
        quote = _quote_hint(document, path, error.instance)
        if quote:
            return quote
    if keyword == "enum":
        close = difflib.get_close_matches(str(error.instance), [str(v) for v in error.validator_value], n=1)
        if close:
            return f"did you mean {close[0]!r}?"
    return _describe_schema(error.schema)


def _quote_hint(document: LoadedDocument, path: JsonPath, instance: Any) -> str | None:
    """`ref: 1.10` → 'YAML read 1.10 as a number; quote it: ref: "1.10"' (env values never echoed)."""
    raw = document.scalar_text.get(path)
    if raw is None or instance is None or not path or not isinstance(path[-1], str) or path[:1] == ("env",):
        return None
    return f'YAML read {raw} as {_type_word(json_type(instance))}; quote it: {path[-1]}: "{raw}"'


def _describe(schema: Mapping[str, Any], key: str) -> str | None:
    sub = schema.get("properties", {}).get(key)
    return _describe_schema(sub) if isinstance(sub, dict) else None


def _describe_schema(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    text = schema.get("description")
    if not text and "$ref" in schema:
        text = _resolve_ref(schema["$ref"]).get("description")
    if not text:
        return None
    first = str(text).split(". ")[0].rstrip(".")
    return first[:200]


def _echo(value: Any, path: JsonPath) -> str:
    """A short, safe rendering of a value for a message; env values are never shown."""
    if path[:1] == ("env",):
        return "the value"
    if isinstance(value, str) and "@" in value:
        value = redact_url(value)  # `https://user:TOKEN@host/…` → `https://***@host/…`
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    if len(text) > MAX_ECHO_CHARS:
        return text[:MAX_ECHO_CHARS] + "…"
    return text
