"""Located problems in a manifest, and the error that carries them.

A `Problem` names where (JSON path and, when the file has one, line:col), what, and how to fix
it. The manifest layer collects every problem before failing, so a user fixes all of them in one
pass. Messages never contain secret values: callers build them from paths and schema facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from runner.errors import ExitCode, RunnerError

PathPart = str | int
JsonPath = tuple[PathPart, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True, order=True)
class Position:
    """1-based line and column in the original file."""

    line: int
    column: int


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as the file allows."""

    path: JsonPath
    message: str
    hint: str | None = None
    severity: Severity = Severity.ERROR
    position: Position | None = None
    policy: bool = False  # a refusal by security policy (exit 4) rather than a mistake (exit 2)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def located(self, position: Position | None) -> Problem:
        """The same problem with a position filled in (if it had none)."""
        if self.position is not None or position is None:
            return self
        return Problem(self.path, self.message, self.hint, self.severity, position, self.policy)

    def as_warning(self) -> Problem:
        return Problem(self.path, self.message, self.hint, Severity.WARNING, self.position, self.policy)

    def to_json(self, source: str) -> dict[str, object]:
        return {
            "file": source,
            "line": self.position.line if self.position else None,
            "column": self.position.column if self.position else None,
            "path": format_path(self.path),
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "policy": self.policy,
        }


def format_path(path: JsonPath) -> str:
    """`run[0].command`, `import["/code"].git.ref`, `env.HF_TOKEN`; `(root)` for the document."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out or "(root)"


def format_problem(source: str, problem: Problem) -> str:
    """`FILE:LINE:COL: path: message` plus an indented hint line."""
    where = source
    if problem.position is not None:
        where = f"{source}:{problem.position.line}:{problem.position.column}"
    prefix = "warning: " if problem.severity is Severity.WARNING else ""
    text = f"{where}: {format_path(problem.path)}: {prefix}{problem.message}"
    if problem.hint:
        text += f"\n    hint: {problem.hint}"
    return text


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """File order first (problems without a line last), then path."""

    def key(p: Problem) -> tuple[int, int, str]:
        if p.position is None:
            return (1 << 30, 0, format_path(p.path))
        return (p.position.line, p.position.column, format_path(p.path))

    return sorted(problems, key=key)


class ManifestError(RunnerError):
    """The manifest has problems; carries all of them. Exit 2, or 4 when any is a policy refusal."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = sort_problems(problems)
        errors = [p for p in self.problems if p.is_error]
        count = len(errors)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source}: {count} {noun} found")
        if any(p.policy for p in errors):
            self.exit_code = ExitCode.POLICY
        else:
            self.exit_code = ExitCode.USAGE

    def report_lines(self) -> list[str]:
        return [format_problem(self.source, p) for p in self.problems]

    def __str__(self) -> str:
        return "\n".join([self.message, *self.report_lines()])
