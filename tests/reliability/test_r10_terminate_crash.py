"""R10 — kill -9 during `terminate`, at each of its checkpoints ×5, then `terminate` again.

Pass criterion (reliability.md R10): 20/20 (4 checkpoints × 5; the table names 3 of them) end
`terminated` with an exit code and 0 containers after the second terminate; a third terminate exits
0 and changes nothing; the oracle holds after each.

Plus random moments: 5 external SIGKILLs at a uniform delay inside a terminate that has to wait out
the grace (the step ignores SIGTERM). tests/integration/test_artifact_faults.py covers the same
checkpoints once each with exports in flight (R10 + R11).
"""

from __future__ import annotations

import random
import signal

from oracle import check_consistency
from runkit import RunKit
from support import assert_clean_output, batch, kill_after, records, run, store_containers

from runner.faults import CHECKPOINTS

TERMINATE_POINTS = ("terminate_after_mark", "terminate_after_stop", "terminate_after_logs", "terminate_after_remove")
REPEATS = 5
RANDOM_KILLS = 5


def test_terminate_checkpoints_are_all_covered():
    assert set(TERMINATE_POINTS) == {p for p in CHECKPOINTS if p.startswith("terminate_")}


def _resume(kit: RunKit, run_id: str, context: str) -> list[str]:
    """The second terminate finishes the job; the third is a no-op that exits 0."""
    problems = []
    second = kit.cli("terminate", run_id, "--json")
    assert_clean_output(second.text)
    if second.code != 0:
        return [f"{context}: second terminate exited {second.code}: {second.text[-500:]}"]
    (row,) = second.json()
    if row["status"] != "terminated" or row["exit_code"] is None:
        problems.append(f"{context}: second terminate left {row['status']} exit {row['exit_code']} ({row['reason']})")
    if store_containers(kit, **{"ai.runner.run-id": run_id}):
        problems.append(f"{context}: a container is left")
    third = kit.cli("terminate", run_id, "--json")
    if third.code != 0 or third.json() != second.json():
        problems.append(f"{context}: third terminate exited {third.code} with {third.out[-300:]}")
    problems += [f"{context}: {p}" for p in check_consistency(kit, grace_s=0)]
    return problems


def test_kill_at_each_terminate_checkpoint(kit: RunKit, figures):
    manifest = kit.manifest(batch("r10", "echo up\nsleep 600"), "r10.yaml")
    problems: list[str] = []
    survived = 0
    for point in TERMINATE_POINTS:
        for n in range(REPEATS):
            created = kit.cli("create", "-f", manifest, "--name", f"r10-{point}-{n}", "--json")
            assert created.code == 0, created.text
            run_id = created.json()["id"]
            crashed = run(kit, "terminate", run_id, "--grace", "2", env={"RUNNER_FAULT_POINT": point})
            assert crashed.code == -signal.SIGKILL, f"{point}: the fault hook did not fire: {crashed.text}"
            assert records(kit)[run_id].status == "stopping", (point, records(kit)[run_id])
            found = _resume(kit, run_id, f"{point} #{n}")
            survived += not found
            problems += found
    figures.add("R10", faults_injected=len(TERMINATE_POINTS) * REPEATS, faults_survived=survived, kind="checkpoint")
    assert problems == [], "\n".join(problems)
    kit.assert_clean()


def test_kill_at_random_moments_of_a_slow_terminate(kit: RunKit, figures):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    manifest = kit.manifest(batch("r10-slow", "trap '' TERM\necho up\nwhile :; do sleep 1; done"), "slow.yaml")
    grace = 2.0
    problems: list[str] = []
    landed = survived = attempts = 0
    while landed < RANDOM_KILLS and attempts < 2 * RANDOM_KILLS:
        attempts += 1
        created = kit.cli("create", "-f", manifest, "--name", f"r10-random-{attempts}", "--json")
        assert created.code == 0, created.text
        run_id = created.json()["id"]
        delay = rng.uniform(0.2, grace + 0.2)  # interpreter start ~0.3 s, then mark, stop (the grace), logs, remove
        result, hit = kill_after(kit, ("terminate", run_id, "--grace", str(grace)), delay)
        landed += hit
        if not hit:
            assert result.code == 0, result.text
        found = _resume(kit, run_id, f"seed {seed} delay {delay:.2f}s")
        survived += hit and not found
        problems += found
    figures.add("R10", faults_injected=landed, faults_survived=survived, kind="random", seed=seed)
    assert problems == [], "\n".join(problems)
    assert landed == RANDOM_KILLS, f"only {landed} kills landed inside the terminate in {attempts} attempts"
    kit.assert_clean()
