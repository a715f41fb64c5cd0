"""How an ended container's state becomes a run's outcome (runner/engine/outcome.py)."""

from __future__ import annotations

import pytest

from runner.backends.base import ContainerState
from runner.engine.outcome import classify


def _ended(code: int | None, *, oom: bool = False, finished_at: float = 1000.0) -> ContainerState:
    return ContainerState(id="c", name="n", status="exited", running=False, exit_code=code, oom_killed=oom,
                          error="", started_at=900.0, finished_at=finished_at)


@pytest.mark.parametrize(("code", "status", "reason"), [
    (0, "completed", "exit code 0"),
    (1, "failed", "exit code 1"),
    (42, "failed", "exit code 42"),
    (127, "failed", "exit code 127"),
    (137, "failed", "killed (SIGKILL)"),
    (139, "failed", "killed by signal 11 (SIGSEGV)"),
    (143, "failed", "killed by signal 15 (SIGTERM)"),
    (192, "failed", "killed by signal 64 (SIGRTMAX)"),  # the highest signal number on Linux
    (193, "failed", "exit code 193"),  # no signal 65: an exit code
    (255, "failed", "exit code 255"),
])
def test_exit_codes(code: int, status: str, reason: str) -> None:
    outcome = classify(_ended(code), stop_requested=False, deadline=None)
    assert (outcome.status, outcome.reason, outcome.exit_code) == (status, reason, code)


def test_the_failing_step_is_named() -> None:
    outcome = classify(_ended(3), stop_requested=False, deadline=None, failed_step="step 2/2")
    assert outcome.reason == "exit code 3 (step 2/2)"


def test_oom_of_the_main_process_vs_a_child() -> None:
    assert classify(_ended(137, oom=True), stop_requested=False, deadline=None).reason == "OOM killed (out of memory)"
    child = classify(_ended(0, oom=True), stop_requested=False, deadline=None)
    assert child.status == "completed" and child.warning is not None and "OOM" in child.warning


def test_a_requested_stop_and_the_runtime_limit_are_terminations() -> None:
    assert classify(_ended(143), stop_requested=True, deadline=None).status == "terminated"
    limit = classify(_ended(137, finished_at=1000.0), stop_requested=False, deadline=1000.5)
    assert (limit.status, limit.reason) == ("terminated", "max_runtime exceeded")
