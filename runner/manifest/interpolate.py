"""Compose-style `${VAR}` interpolation of one string value.

Grammar (docker compose's, minus nothing, plus strictness): `$$` is a literal `$`; `$NAME` and
`${NAME}` substitute; `${NAME:-default}` / `${NAME-default}` fall back when NAME is unset-or-empty /
unset; `${NAME:?message}` / `${NAME?message}` demand a value; `${NAME:+alt}` / `${NAME+alt}` give
`alt` when NAME is set-and-non-empty / set. Defaults nest (`${A:-${B}}`). Unlike compose, an unset
variable without a default is reported (as `Unresolved`) instead of silently becoming "".
A `$` not followed by `{`, `$` or a name is kept literally.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Lookup = Callable[[str], "str | None"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Unresolved:
    """A variable the text needs but no source provides."""

    name: str
    message: str | None = None  # from `${NAME:?message}`


class InterpolationSyntaxError(ValueError):
    """The text has a malformed `${…}` expression."""


@dataclass
class _Result:
    text: str
    unresolved: list[Unresolved]


def has_interpolation(text: str) -> bool:
    return "$" in text


def interpolate(text: str, lookup: Lookup) -> tuple[str, list[Unresolved]]:
    """Substitute variables in `text`; unresolved ones are kept verbatim and listed."""
    if "$" not in text:
        return text, []
    parser = _Parser(text, lookup)
    result = parser.parse_until(end=None)
    return result.text, result.unresolved


class _Parser:
    def __init__(self, text: str, lookup: Lookup) -> None:
        self._text = text
        self._lookup = lookup
        self._pos = 0

    def parse_until(self, end: str | None) -> _Result:
        """Parse literal text and expressions up to `end` (a closing brace) or the end of text."""
        out: list[str] = []
        unresolved: list[Unresolved] = []
        text = self._text
        while self._pos < len(text):
            char = text[self._pos]
            if end is not None and char == end:
                return _Result("".join(out), unresolved)
            if char != "$":
                out.append(char)
                self._pos += 1
                continue
            piece, missing = self._dollar()
            out.append(piece)
            unresolved.extend(missing)
        if end is not None:
            raise InterpolationSyntaxError("unterminated `${` (missing `}`)")
        return _Result("".join(out), unresolved)

    def _dollar(self) -> tuple[str, list[Unresolved]]:
        text, start = self._text, self._pos
        nxt = text[start + 1] if start + 1 < len(text) else ""
        if nxt == "$":
            self._pos += 2
            return "$", []
        if nxt == "{":
            return self._braced()
        match = _NAME.match(text, start + 1)
        if match is None:
            self._pos += 1
            return "$", []
        self._pos = match.end()
        return self._substitute(match.group(), text[start:self._pos])

    def _substitute(self, name: str, original: str) -> tuple[str, list[Unresolved]]:
        value = self._lookup(name)
        if value is None:
            return original, [Unresolved(name)]
        return value, []

    def _braced(self) -> tuple[str, list[Unresolved]]:
        text, start = self._text, self._pos
        match = _NAME.match(text, start + 2)
        if match is None:
            raise InterpolationSyntaxError(f"invalid variable name after `${{` at offset {start}")
        name = match.group()
        self._pos = match.end()
        operator = self._operator()
        if operator is None:
            if self._pos >= len(text) or text[self._pos] != "}":
                raise InterpolationSyntaxError(f"invalid `${{{name}…` expression (expected `}}`)")
            self._pos += 1
            return self._substitute(name, text[start:self._pos])
        inner = self.parse_until(end="}")
        self._pos += 1  # the closing brace
        original = text[start:self._pos]
        return self._apply(name, operator, inner, original)

    def _operator(self) -> str | None:
        for operator in (":-", ":?", ":+", "-", "?", "+"):
            if self._text.startswith(operator, self._pos):
                self._pos += len(operator)
                return operator
        return None

    def _apply(self, name: str, operator: str, inner: _Result, original: str) -> tuple[str, list[Unresolved]]:
        value = self._lookup(name)
        present = value is not None and (value != "" or not operator.startswith(":"))
        if operator in (":-", "-"):
            return (value, []) if present and value is not None else (inner.text, inner.unresolved)
        if operator in (":+", "+"):
            return (inner.text, inner.unresolved) if present else ("", [])
        if present and value is not None:
            return value, []
        return original, [Unresolved(name, inner.text or None)]
