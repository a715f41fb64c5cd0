"""Test-only fault points: named checkpoints where the process kills itself with SIGKILL.

`RUNNER_FAULT_POINT=<name>` arms one checkpoint; `RUNNER_FAULT_AFTER_MS=<n>` delays the kill
by n milliseconds after the checkpoint is reached (so a kill can land mid-operation);
`RUNNER_FAULT_SIGNAL=TERM` (or INT, HUP) sends that signal instead, as a user or a supervisor would.
Reliability tests use these to prove that a crash at any named step leaves consistent state.
Unset (the normal case) the check is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal
import threading

FAULT_ENV = "RUNNER_FAULT_POINT"
FAULT_DELAY_ENV = "RUNNER_FAULT_AFTER_MS"
FAULT_SIGNAL_ENV = "RUNNER_FAULT_SIGNAL"

# Every checkpoint name in the code base, so tests can iterate over them and a typo fails loudly.
CHECKPOINTS = frozenset(
    {
        # create
        "after_intent_insert",
        "after_imports",
        "before_container_create",
        "after_container_create",
        "after_put_files",
        "after_start",
        "before_state_update",
        # terminate
        "terminate_after_mark",
        "terminate_after_stop",
        "terminate_after_logs",
        "terminate_after_remove",
        # export / artifact publish
        "during_export_stream",
        "after_stage_fsync",
        "before_version_rename",
        "after_version_rename",
        "before_latest_replace",
        "after_latest_replace",
    }
)


def _signal_self() -> None:
    name = os.environ.get(FAULT_SIGNAL_ENV) or "KILL"
    os.kill(os.getpid(), signal.Signals[f"SIG{name}"])


def checkpoint(name: str) -> None:
    """Signal this process (SIGKILL unless RUNNER_FAULT_SIGNAL says otherwise) if the fault point `name` is armed."""
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown fault checkpoint {name!r}")
    if os.environ.get(FAULT_ENV) != name:
        return
    delay_ms = int(os.environ.get(FAULT_DELAY_ENV, "0") or 0)
    if delay_ms <= 0:
        _signal_self()
        return
    timer = threading.Timer(delay_ms / 1000.0, _signal_self)
    timer.daemon = True
    timer.start()
