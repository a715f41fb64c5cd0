"""`.env` files: the variables `${VAR}` and `{PLACEHOLDER}` values may be filled from.

Format (docker compose's): `KEY=VALUE` lines, optional `export ` prefix, `#` comments and blank
lines; single-quoted values are literal, double-quoted values understand \\n, \\t, \\" and \\\\;
unquoted values end at ` #`. Errors name the file and line but never echo a value.
"""

from __future__ import annotations

import re
from pathlib import Path

from runner.manifest.problems import ManifestError, Position, Problem

MAX_ENV_FILE_BYTES = 256 * 1024
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s?(.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_env_file(path: Path) -> dict[str, str]:
    """Parse `path`; a missing file is an error (callers check existence for the default .env)."""
    source = str(path)
    try:
        raw = path.read_bytes()[: MAX_ENV_FILE_BYTES + 1]
    except OSError as exc:
        raise ManifestError(source, [Problem((), f"cannot read env file: {exc.strerror}")]) from None
    if len(raw) > MAX_ENV_FILE_BYTES:
        raise ManifestError(source, [Problem((), f"env file is larger than {MAX_ENV_FILE_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(source, [Problem((), "env file is not valid UTF-8")]) from None
    return parse_env_text(text, source)


def parse_env_text(text: str, source: str) -> dict[str, str]:
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            problems.append(Problem((), "expected KEY=VALUE", position=Position(number, 1)))
            continue
        try:
            values[match.group(1)] = _value(match.group(2))
        except ValueError as exc:
            problems.append(Problem((match.group(1),), str(exc), position=Position(number, 1)))
    if problems:
        raise ManifestError(source, problems)
    return values


def _value(raw: str) -> str:
    raw = raw.strip()
    if raw[:1] == "'":
        end = raw.find("'", 1)
        if end < 0:
            raise ValueError("unterminated single quote")
        return raw[1:end]
    if raw[:1] == '"':
        return _double_quoted(raw)
    comment = raw.find(" #")
    return (raw[:comment] if comment >= 0 else raw).rstrip()


def _double_quoted(raw: str) -> str:
    out: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == '"':
            return "".join(out)
        if char == "\\" and index + 1 < len(raw):
            out.append(_ESCAPES.get(raw[index + 1], "\\" + raw[index + 1]))
            index += 2
            continue
        out.append(char)
        index += 1
    raise ValueError("unterminated double quote")
