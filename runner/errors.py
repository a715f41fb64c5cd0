"""The error root of runner and the exit code each kind of failure maps to.

Every error says what happened and what to do next (`hint`). Only `runner.cli.main` turns
these into exit codes and text; nothing else prints or calls `sys.exit`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in the README and relied on by scripts."""

    OK = 0
    RUN_FAILED = 1
    USAGE = 2  # bad manifest, bad flags, unknown run id
    ENGINE = 3  # Docker unreachable or refused a request
    POLICY = 4  # refused on purpose: privileges, host paths, inline secrets
    INTERRUPTED = 130


class RunnerError(Exception):
    """Root of every error runner raises on purpose.

    `message` says what happened (never a secret value); `hint` says what to do next.
    """

    exit_code: ExitCode = ExitCode.RUN_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(RunnerError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = ExitCode.USAGE


class NotFoundError(UsageError):
    """A run, artifact or secret named on the command line does not exist."""


class PolicyError(RunnerError):
    """A request refused on purpose by a security default (exit 4)."""

    exit_code = ExitCode.POLICY


class EngineError(RunnerError):
    """The container engine is unreachable or rejected a request (exit 3)."""

    exit_code = ExitCode.ENGINE


class RunFailedError(RunnerError):
    """The run itself failed: non-zero exit, import failure, readiness timeout (exit 1)."""

    exit_code = ExitCode.RUN_FAILED


class Interrupted(RunnerError):
    """The user interrupted a foreground command (SIGINT/SIGTERM)."""

    exit_code = ExitCode.INTERRUPTED


class ImportFailedError(RunFailedError):
    """An import (git clone, artifact, model download) could not be prepared."""


class ExportFailedError(RunFailedError):
    """An export (artifact publish) could not be completed; earlier versions stay intact."""
