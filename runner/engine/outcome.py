"""How a run ended: exit status + what we know → status and a reason (reliability.md §2, exit fidelity).

- `OOM killed` only when the engine says OOMKilled *and* the exit code is 137; OOMKilled with exit
  0 means a child was killed and the run still succeeded (reported as a warning).
- A bare 137 is "killed (SIGKILL)", 128+n is "killed by signal n" (n a signal number, so 255 stays
  "exit code 255"); other codes are "exit code N".
- A stop the user asked for is `terminated`; so is a stop by the in-container max_runtime watchdog
  (reason "max_runtime exceeded").
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from runner.backends.base import ContainerState

DEADLINE_SLACK_S = 2.0


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | failed | terminated
    reason: str
    exit_code: int | None
    warning: str | None = None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(state: ContainerState, *, stop_requested: bool, deadline: float | None,
             failed_step: str | None = None) -> Outcome:
    code = state.exit_code
    hit_deadline = (deadline is not None and state.finished_at is not None
                    and state.finished_at >= deadline - DEADLINE_SLACK_S)
    # checked first: when the in-container watchdog is missing, reconcile stops the run itself
    if hit_deadline and code in (124, 137, 143):
        return Outcome("terminated", "max_runtime exceeded", code)
    if stop_requested:
        return Outcome("terminated", "terminated by user", code)
    if code == 0:
        warning = "a process in the run was killed for lack of memory (OOM); the run still exited 0" \
            if state.oom_killed else None
        return Outcome("completed", "exit code 0", 0, warning)
    if code is None:
        return Outcome("failed", state.error or "the container ended without an exit code", None)
    if state.oom_killed and code == 137:
        return Outcome("failed", "OOM killed (out of memory)", code)
    where = f" ({failed_step})" if failed_step else ""
    if 128 < code < 128 + signal.NSIG:  # 128+n is "killed by signal n" only for a real signal number; 255 is 255
        number = code - 128
        what = "killed (SIGKILL)" if number == 9 else f"killed by signal {number} ({signal_name(number)})"
        return Outcome("failed", what + where, code)
    return Outcome("failed", f"exit code {code}{where}", code)


def start_failure_reason(message: str) -> str:
    """A short reason for an engine error at container create/start."""
    lowered = message.lower()
    if "port is already allocated" in lowered or "address already in use" in lowered:
        return f"port in use: {message}"
    if "could not select device driver" in lowered or "unknown or invalid runtime name: nvidia" in lowered:
        return f"GPU unavailable: {message}"
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return f"entrypoint not found: {message}"
    return message
