"""Bounded, safe YAML loading that keeps every node's line and column.

Manifests are untrusted input. This module reads at most `MAX_MANIFEST_BYTES`, refuses NUL and
control characters and invalid UTF-8, treats tabs as VESSL's CLI does (two spaces), and builds the
document straight from libyaml's event stream so that, before any value is constructed, it can
refuse anchors and aliases (no alias bombs), custom tags, duplicate keys, non-scalar keys, more
than one document, nesting deeper than `MAX_DEPTH` and more than `MAX_EVENTS` nodes.

The result is plain JSON-like data plus side tables: the position of every value and key, and the
source text of every scalar YAML converted to a non-string (so `ref: 1.10` can be explained).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.manifest.problems import JsonPath, ManifestError, Position, Problem

MAX_MANIFEST_BYTES = 1 << 20  # 1 MiB: real manifests are a few KiB
MAX_DEPTH = 64
MAX_EVENTS = 2_000  # ~7x the largest VESSL example (280 nodes); bounds the whole pipeline to well under 1 s

_SAFE_TAGS = frozenset(
    "tag:yaml.org,2002:" + name for name in ("str", "int", "float", "bool", "null", "map", "seq")
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# C0 controls, DEL, and lone surrogates (only reachable from a str; UTF-8 cannot carry them)
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class LoadedDocument:
    """A parsed manifest: JSON-like `data` plus where each part came from."""

    source: str
    data: dict[str, Any]
    value_positions: Mapping[JsonPath, Position]
    key_positions: Mapping[JsonPath, Position]
    scalar_text: Mapping[JsonPath, str]  # source text of scalars YAML read as non-strings

    def position_of(self, path: JsonPath, *, key: bool = False) -> Position | None:
        """Position of `path` (its key when `key`), else of the nearest ancestor that has one."""
        probe = tuple(path)
        while True:
            table = self.key_positions if key else self.value_positions
            found = table.get(probe) or self.value_positions.get(probe)
            if found is not None or not probe:
                return found
            probe = probe[:-1]

    def with_data(self, data: dict[str, Any]) -> LoadedDocument:
        """The same document (positions unchanged) holding transformed values of the same shape."""
        return LoadedDocument(self.source, data, self.value_positions, self.key_positions, self.scalar_text)


def read_manifest_bytes(path: str) -> bytes:
    """Read a manifest file (or `-` for stdin), refusing anything over the size cap unread."""
    if path == "-":
        import sys

        data = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
    else:
        try:
            with Path(path).open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_MANIFEST_BYTES:
                    raise ManifestError(path, [_too_big(size)])
                data = handle.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise ManifestError(
                path, [Problem((), "file not found", hint="check the path given to -f")]
            ) from None
        except IsADirectoryError:
            raise ManifestError(path, [Problem((), "is a directory, not a manifest file")]) from None
        except PermissionError:
            raise ManifestError(path, [Problem((), "permission denied while reading the file")]) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(path, [_too_big(len(data))])
    return data


def _too_big(size: int) -> Problem:
    return Problem(
        (),
        f"manifest is {size} bytes; the limit is {MAX_MANIFEST_BYTES} bytes",
        hint="a run manifest is a few KiB; move data into imports instead of inlining it",
    )


def decode_manifest(data: bytes, source: str) -> str:
    """UTF-8 (an optional BOM is dropped); invalid bytes are refused with their line and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        # in characters, like every other position (the line's valid prefix decodes cleanly)
        column = len(data[line_start:exc.start].decode("utf-8", "replace")) + 1
        raise ManifestError(
            source,
            [Problem((), "invalid UTF-8 byte", hint="save the file as UTF-8", position=Position(line, column))],
        ) from None
    return text.removeprefix("\ufeff")


def load_manifest_text(text: str, source: str) -> LoadedDocument:
    """Parse one manifest document from text, enforcing every bound described in the module doc."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MANIFEST_BYTES:
        raise ManifestError(source, [_too_big(len(text))])
    _refuse_control_characters(text, source)
    columns = _ColumnMap(text)
    builder = _DocumentBuilder(source, columns)
    try:
        for event in yaml.parse(text.replace("\t", "  "), Loader=_LOADER):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        raise ManifestError(source, [_yaml_problem(exc, columns)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses (e.g. U+FFFE); no mark, an index
        raise ManifestError(source, [Problem(
            (), f"invalid YAML: character U+{exc.character:04X} is not allowed",
            position=_offset_position(text, exc.position))]) from None
    except yaml.YAMLError as exc:
        raise ManifestError(source, [Problem((), f"invalid YAML: {exc}")]) from None
    return builder.result()


def _refuse_control_characters(text: str, source: str) -> None:
    match = _FORBIDDEN_CHARS.search(text)
    if match is None:
        return
    char = match.group()
    kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "control character"
    name = "NUL" if char == "\x00" else f"{kind} U+{ord(char):04X}"
    raise ManifestError(
        source,
        [Problem((), f"{name} is not allowed in a manifest", position=_offset_position(text, match.start()))],
    )


def _offset_position(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return Position(line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _yaml_problem(exc: yaml.MarkedYAMLError, columns: _ColumnMap) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    position = columns.position(mark.line, mark.column) if mark is not None else None
    detail = exc.problem or exc.context or "invalid YAML"
    hint = None
    if "mapping values are not allowed" in detail:
        hint = "a value containing ': ' must be quoted, e.g. command: \"echo a: b\""
    elif "found character" in detail and "cannot start any token" in detail:
        hint = "quote the value (YAML reserves @, `, % and | / > at the start of a plain value)"
    elif "{{" in (exc.problem or "") or "unhashable" in detail:
        hint = "`{{ … }}` is a Jinja2 template; pass its variables with --var NAME=VALUE"
    return Problem((), f"invalid YAML: {detail}", hint=hint, position=position)


class _ColumnMap:
    """Maps parser columns (tabs expanded to two spaces) back to columns in the original line."""

    def __init__(self, text: str) -> None:
        self._lines_with_tabs = {
            number: line for number, line in enumerate(text.split("\n")) if "\t" in line
        }

    def position(self, line0: int, column0: int) -> Position:
        original = self._lines_with_tabs.get(line0)
        if original is None:
            return Position(line0 + 1, column0 + 1)
        width = 0
        for index, char in enumerate(original):
            if width >= column0:
                return Position(line0 + 1, index + 1)
            width += 2 if char == "\t" else 1
        return Position(line0 + 1, len(original) + 1)


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    path: JsonPath
    pending_key: str | None = None
    key_lines: dict[str, Position] | None = None


class _DocumentBuilder:
    """Builds data from YAML events, refusing what the module doc lists as it goes."""

    def __init__(self, source: str, columns: _ColumnMap) -> None:
        self._source = source
        self._columns = columns
        self._resolver = yaml.resolver.Resolver()
        self._constructor = yaml.constructor.SafeConstructor()
        self._stack: list[_Frame] = []
        self._root: Any = None
        self._has_root = False
        self._documents = 0
        self._events = 0
        self._values: dict[JsonPath, Position] = {}
        self._keys: dict[JsonPath, Position] = {}
        self._scalar_text: dict[JsonPath, str] = {}

    def _event_position(self, event: yaml.Event) -> Position:
        mark = event.start_mark  # libyaml always sets it; the type allows None
        return self._columns.position(mark.line, mark.column) if mark is not None else Position(1, 1)

    def _current_path(self) -> JsonPath:
        if not self._stack:
            return ()
        frame = self._stack[-1]
        if isinstance(frame.container, list):
            return (*frame.path, len(frame.container))
        return frame.path if frame.pending_key is None else (*frame.path, frame.pending_key)

    def _fail(self, event: yaml.Event, message: str, hint: str | None = None,
              path: JsonPath | None = None) -> None:
        position = self._event_position(event)
        where = self._current_path() if path is None else path
        raise ManifestError(self._source, [Problem(where, message, hint=hint, position=position)])

    def feed(self, event: yaml.Event) -> None:
        self._events += 1
        if self._events > MAX_EVENTS:
            self._fail(event, f"manifest has more than {MAX_EVENTS} YAML nodes", path=())
        if isinstance(event, yaml.DocumentStartEvent):
            self._documents += 1
            if self._documents > 1:
                self._fail(event, "expected a single YAML document, found another one",
                           hint="remove the `---` separator; one manifest file describes one run")
        elif isinstance(event, yaml.AliasEvent):
            self._fail(event, "YAML aliases (*name) are not allowed in a manifest",
                       hint="write the value out in full")
        elif isinstance(event, yaml.ScalarEvent):
            self._check_node_event(event)
            self._scalar(event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._check_node_event(event)
            self._open(event)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            self._stack.pop()

    def _check_node_event(self, event: yaml.NodeEvent) -> None:
        if event.anchor is not None:
            self._fail(event, f"YAML anchors (&{event.anchor}) are not allowed in a manifest",
                       hint="write the value out in full")
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in _SAFE_TAGS:
            self._fail(event, f"YAML tag {tag!r} is not allowed in a manifest",
                       hint="remove the tag; plain strings, numbers, booleans, lists and mappings suffice")

    def _place(self, event: yaml.Event, value: Any) -> JsonPath | None:
        """Attach `value` to its parent; returns its path, or None when it was a mapping key."""
        position = self._event_position(event)
        if not self._stack:
            if self._has_root:
                self._fail(event, "expected a single YAML document")
            self._root, self._has_root = value, True
            self._values[()] = position
            return ()
        frame = self._stack[-1]
        if isinstance(frame.container, list):
            path = (*frame.path, len(frame.container))
            frame.container.append(value)
        else:
            if frame.pending_key is None:
                return None
            path = (*frame.path, frame.pending_key)
            frame.container[frame.pending_key] = value
            frame.pending_key = None
        self._values[path] = position
        return path

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        frame = self._stack[-1] if self._stack else None
        if frame is not None and isinstance(frame.container, dict) and frame.pending_key is None:
            self._key(event, frame)
            return
        value = self._construct(event)
        path = self._place(event, value)
        if path is not None and not isinstance(value, str):
            self._scalar_text[path] = event.value

    def _key(self, event: yaml.ScalarEvent, frame: _Frame) -> None:
        key = event.value
        position = self._event_position(event)
        assert frame.key_lines is not None
        first = frame.key_lines.get(key)
        if first is not None:
            self._fail(event, f"duplicate key {key!r} (first defined at line {first.line})",
                       hint="YAML would silently keep only the last one; merge or rename them",
                       path=(*frame.path, key))
        frame.key_lines[key] = position
        frame.pending_key = key
        key_path = (*frame.path, key)
        self._keys[key_path] = position

    def _construct(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            tag = str(self._resolver.resolve(yaml.ScalarNode, event.value, event.implicit))  # type: ignore[no-untyped-call]
        if tag == _TIMESTAMP_TAG:
            return event.value  # JSON has no dates; keep what the user wrote
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError):
            self._fail(event, f"cannot read {event.value!r} as {tag.rsplit(':', 1)[-1]}")
        return None  # unreachable: _fail raises

    def _open(self, event: yaml.MappingStartEvent | yaml.SequenceStartEvent) -> None:
        frame = self._stack[-1] if self._stack else None
        if frame is not None and isinstance(frame.container, dict) and frame.pending_key is None:
            self._fail(event, "mapping keys must be plain text, not lists or mappings")
        if len(self._stack) >= MAX_DEPTH:
            self._fail(event, f"manifest nests deeper than {MAX_DEPTH} levels", path=self._stack[0].path)
        mapping = isinstance(event, yaml.MappingStartEvent)
        container: dict[str, Any] | list[Any] = {} if mapping else []
        path = self._place(event, container)
        assert path is not None
        self._stack.append(_Frame(container, path, key_lines={} if mapping else None))

    def result(self) -> LoadedDocument:
        if not self._has_root or self._root is None:
            raise ManifestError(self._source, [Problem((), "the manifest is empty",
                                                       hint="a run needs at least `image` and `resources`")])
        if not isinstance(self._root, dict):
            kind = "a list" if isinstance(self._root, list) else "a single value"
            raise ManifestError(self._source, [Problem(
                (), f"the manifest must be a mapping of keys (name, image, resources, …), not {kind}",
                position=self._values.get(()),
            )])
        return LoadedDocument(self._source, self._root, self._values, self._keys, self._scalar_text)
