"""R6 — graceful stop: a step that traps SIGTERM, one that ignores it, and one with no handler at all.

Pass criterion (reliability.md R6), 3 runs each:
- trap: `terminated` well before the grace, the trap's own output in the logs; exit 143 (the table allows
  0 or 143: the step's trap exits 0, then runner's entrypoint, which waited for it, exits 143);
- ignore: killed when the grace runs out (±1 s), exit 137, not reported as OOM;
- no handler (`exec sleep`, the shell replaced by a program that installs none): ends at once (< 2 s).
  In a container without an init, such a program as PID 1 ignores SIGTERM and dies only by SIGKILL
  after the grace; runner always starts containers with `--init` (tini, killing the whole process
  group), so it ends at once. An init-less baseline container proves the difference here.

Times are taken from the engine: the run's finish time (`FinishedAt`, persisted by the finalizer)
minus the moment the terminate was issued. tests/integration/test_engine_lifecycle.py covers one
run of each of the first two with wall-clock bounds.
"""

from __future__ import annotations

import time

import docker
from oracle import check_consistency
from runkit import RunKit
from support import BUSYBOX, batch, records

REPEATS = 3
GRACE_S = 4.0
CASES = {
    # the step's trap exits 0; the entrypoint shell, which waited for it, ends the run with 143
    "trap": ("trap 'echo got-term; exit 0' TERM\necho ready\nwhile :; do sleep 0.2; done", 143),
    "ignore": ("trap '' TERM\necho ready\nwhile :; do sleep 1; done", 137),
    "no-handler": ("echo ready\nexec sleep 600", 143),
}


def _stop_one(kit: RunKit, wait_for, case: str, n: int) -> tuple[float, dict]:
    command, _ = CASES[case]
    run_id = kit.create(batch(f"r6-{case}-{n}", command), "--grace", str(GRACE_S))["id"]
    wait_for(lambda: "ready" in kit.cli("logs", run_id).out, what=f"{case} step to start", timeout=30)
    issued = time.time()
    result = kit.cli("terminate", run_id)
    assert result.code == 0, result.text
    record = records(kit)[run_id]
    assert record.finished_at is not None
    if case == "trap":
        assert "got-term" in kit.cli("logs", run_id).out
    return record.finished_at - issued, {"status": record.status, "exit": record.exit_code, "reason": record.reason}


def test_trap_ignore_and_no_handler(kit: RunKit, wait_for, figures):
    seen: dict[str, list[tuple[float, dict]]] = {case: [] for case in CASES}
    for n in range(REPEATS):
        for case in CASES:
            seen[case].append(_stop_one(kit, wait_for, case, n))
    summary = {case: [round(t, 2) for t, _ in results] for case, results in seen.items()}
    figures.add("R6", stops=REPEATS * len(CASES), trap_s=max(summary["trap"]), ignore_s=max(summary["ignore"]),
                no_handler_s=max(summary["no-handler"]), grace_s=GRACE_S)
    for case, results in seen.items():
        for _took, outcome in results:
            assert outcome == {"status": "terminated", "exit": CASES[case][1], "reason": "terminated by user"}, \
                (case, outcome)
    assert all(t < 2.0 for t in summary["trap"]), summary
    assert all(GRACE_S - 1 <= t <= GRACE_S + 1 for t in summary["ignore"]), summary
    assert all(t < 2.0 for t in summary["no-handler"]), summary
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()


def test_without_an_init_the_same_program_waits_out_the_grace(docker_client: docker.DockerClient,
                                                              test_labels: dict[str, str]):
    """The baseline: `sleep` as PID 1 of an init-less container ignores SIGTERM (the kernel gives PID 1 no
    default actions), so `docker stop` needs the grace and SIGKILL. This is what runner's init avoids."""
    container = docker_client.containers.run(BUSYBOX, ["sleep", "600"], detach=True, init=False, labels=test_labels)
    try:
        started = time.monotonic()
        container.stop(timeout=3)
        took = time.monotonic() - started
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 137
        assert took >= 2.5, f"stopped after {took:.1f}s: PID 1 without an init should have ignored SIGTERM"
    finally:
        container.remove(force=True)
