"""R1 — kill -9 during `create`: at every named create checkpoint ×3 and at 20 random moments.

Pass criterion (reliability.md R1): every crash leaves a consistent state after one `runner list`
(oracle (a)–(e)); re-running `create` with the same manifest yields exactly one container; after
`runner gc --grace 0` nothing is left.

Each attempt creates a GPU-less *service* (busybox httpd, a published port) with `create --wait`,
so the window covers intent, image, imports, container create, file copy, start, the state update
and the readiness wait. Checkpoint kills use the test-only hook (`RUNNER_FAULT_POINT`, the CLI
SIGKILLs itself); random kills come from outside, after a delay drawn uniformly over the duration
of an uninterrupted create measured first. Every attempt uses its own run name, so a re-create
converges that attempt's name, and the runs stay up until the end (then terminated together).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from oracle import check_consistency
from runkit import RunKit
from support import (
    assert_clean_output,
    kill_after,
    named_containers,
    records,
    run,
    service,
    spawn,
    store_containers,
    terminate_all,
)

from runner.faults import CHECKPOINTS

CREATE_POINTS = ("after_intent_insert", "after_imports", "before_container_create", "after_container_create",
                 "after_put_files", "after_start", "before_state_update")
REPEATS = 3
RANDOM_KILLS = 20


def test_create_checkpoints_are_all_covered():
    non_create = {p for p in CHECKPOINTS if p.startswith("terminate_") or "export" in p or "version" in p
                  or "latest" in p or "stage" in p}
    assert set(CREATE_POINTS) == CHECKPOINTS - non_create


def _converge(kit: RunKit, name: str, manifest: str) -> list[str]:
    """After a crash: one `runner list`, the oracle, `create` again, exactly one container; then gc."""
    problems: list[str] = []
    listed = kit.cli("list")
    assert listed.code == 0, listed.text
    assert_clean_output(listed.text)
    problems += [f"{name} after list: {p}" for p in check_consistency(kit)]
    again = kit.cli("create", "-f", manifest, "--json")
    assert again.code == 0, f"{name}: re-create failed: {again.text}"
    assert_clean_output(again.text)
    containers = named_containers(kit, name)
    if len(containers) != 1 or containers[0]["State"] != "running":
        problems.append(f"{name}: re-create left {[(c['Names'], c['State']) for c in containers]}")
    active = [r for r in records(kit).values() if r.name == name and r.status in ("running", "idle")]
    if [r.id for r in active] != [again.json()["id"]]:
        problems.append(f"{name}: active records after re-create: {[(r.id, r.status) for r in active]}")
    gc = kit.cli("gc", "--grace", "0")
    assert gc.code == 0, gc.text
    problems += [f"{name} after gc: {p}" for p in check_consistency(kit, grace_s=0)]
    return problems


def _finish(kit: RunKit) -> None:
    live = [r.id for r in records(kit).values() if r.status in ("running", "idle")]
    terminate_all(kit, live)
    assert kit.cli("gc", "--grace", "0").code == 0
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()


def test_kill_at_each_create_checkpoint(kit: RunKit, figures):
    problems: list[str] = []
    outcomes: dict[str, list[str]] = {}
    survived = 0
    for point in CREATE_POINTS:
        for rep in range(REPEATS):
            name = f"r1-{point.replace('_', '-')}-{rep}"
            manifest = kit.manifest(service(name), f"{name}.yaml")
            crashed = run(kit, "create", "-f", manifest, "--wait", env={"RUNNER_FAULT_POINT": point})
            assert crashed.code == -signal.SIGKILL, f"{point}: the fault hook did not fire: {crashed.text}"
            (record,) = [r for r in records(kit).values() if r.name == name]
            outcomes.setdefault(point, []).append(record.status)
            found = _converge(kit, name, manifest)
            after = records(kit)[record.id]
            if after.status != "failed" or not (after.reason or "").startswith("interrupted while creating"):
                found.append(f"{name}: crashed run ended {after.status} ({after.reason})")
            survived += not found
            problems += found
    figures.add("R1", faults_injected=len(CREATE_POINTS) * REPEATS, faults_survived=survived, kind="checkpoint")
    assert problems == [], "\n".join(problems)
    # where each checkpoint leaves the record before the reconcile (the intent is always first)
    assert outcomes["after_intent_insert"] == ["pending"] * REPEATS
    assert all(status == "initializing" for point in CREATE_POINTS[1:] for status in outcomes[point])
    _finish(kit)


def test_kill_at_random_moments(kit: RunKit, figures):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    calibrate = kit.manifest(service("r1-calibrate"), "calibrate.yaml")
    started = time.monotonic()
    baseline = run(kit, "create", "-f", calibrate, "--wait")
    duration = time.monotonic() - started
    assert baseline.code == 0, baseline.text
    problems: list[str] = []
    landed, attempts, survived = 0, 0, 0
    while landed < RANDOM_KILLS and attempts < RANDOM_KILLS * 2:
        attempts += 1
        name = f"r1-random-{attempts}"
        manifest = kit.manifest(service(name), f"{name}.yaml")
        delay = rng.uniform(0.0, duration)
        result, hit = kill_after(kit, ("create", "-f", manifest, "--wait"), delay)
        if not hit:  # it finished first: no fault injected, but it must have succeeded
            assert result.code == 0, result.text
            continue
        landed += 1
        found = _converge(kit, name, manifest)
        survived += not found
        problems += [f"(seed {seed}, delay {delay:.2f}s) {p}" for p in found]
    figures.add("R1", faults_injected=landed, faults_survived=survived, kind="random", window_s=round(duration, 2),
                seed=seed)
    assert landed == RANDOM_KILLS, f"only {landed} kills landed in {attempts} attempts"
    assert problems == [], "\n".join(problems)
    _finish(kit)


@pytest.mark.parametrize("point", ["after_intent_insert", "after_start"])
def test_an_unreaped_creator_counts_as_dead(kit: RunKit, wait_for, point: str):
    """A killed `runner create` whose parent has not reaped it yet is a zombie: /proc still lists it with
    the same start time, but it will never finish the run. Reconcile must not wait for it."""
    manifest = kit.manifest(service("r1-zombie"), "zombie.yaml")
    proc = spawn(kit, "create", "-f", manifest, env={"RUNNER_FAULT_POINT": point})

    def zombie() -> bool:
        try:
            return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
        except OSError:
            return False

    try:
        wait_for(zombie, what="the killed creator to become a zombie", timeout=60)
        listed = kit.cli("list", "--json")
        assert listed.code == 0, listed.text
        (run_row,) = listed.json()
        assert run_row["status"] == "failed" and run_row["reason"].startswith("interrupted while creating")
        assert check_consistency(kit, grace_s=0) == []
    finally:
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    kit.assert_clean()


def test_after_a_crash_the_name_still_means_the_live_run(kit: RunKit):
    """What a new user does next: `runner list` shows the crashed attempt plainly, and `runner terminate NAME`
    (as `create` suggests) stops the live run instead of failing with "matches several runs" because the
    crashed attempt has the same name. Once both have ended, the name is ambiguous and says so."""
    manifest = kit.manifest(service("r1-named"), "named.yaml")
    crashed = run(kit, "create", "-f", manifest, env={"RUNNER_FAULT_POINT": "after_container_create"})
    assert crashed.code == -signal.SIGKILL
    again = kit.cli("create", "-f", manifest, "--json")
    assert again.code == 0, again.text
    live = again.json()["id"]
    table = kit.cli("list").out
    assert "failed (interrupted while creating)" in table, table
    stopped = kit.cli("terminate", "r1-named", "--json")
    assert stopped.code == 0, stopped.text
    assert [row["id"] for row in stopped.json()] == [live] and stopped.json()[0]["status"] == "terminated"
    ambiguous = kit.cli("describe", "r1-named")
    assert ambiguous.code == 2 and "matches several runs" in ambiguous.err, ambiguous.text
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()


@pytest.mark.parametrize("then", ["create-again", "gc", "list"])
def test_a_dangling_container_of_a_crashed_create_is_swept(kit: RunKit, then: str, test_labels: dict[str, str]):
    """A kill that lands while `POST /containers/create` is in flight: the engine finishes the create after
    the creator died, possibly after a `runner list` already recorded the run as failed — the container
    appears for an ended run (seen once in R1's random kills). Replayed deterministically by creating that
    container by hand; then a re-create of the name, a plain `runner gc` (default 60 s grace) or the next
    reconcile removes it at once: no grace is needed for a run that is over."""
    manifest = kit.manifest(service("r1-dangling"), "dangling.yaml")
    crashed = run(kit, "create", "-f", manifest, env={"RUNNER_FAULT_POINT": "after_imports"})
    assert crashed.code == -signal.SIGKILL
    assert kit.cli("list").code == 0
    (dead,) = records(kit).values()
    assert dead.status == "failed"
    labels = {"ai.runner.managed": "true", "ai.runner.store": kit.store_id, "ai.runner.run-id": dead.id,
              "ai.runner.spec-hash": dead.spec_hash, "ai.runner.name": dead.name, **test_labels}
    kit.client.containers.create("runner-test/busybox:1", ["sleep", "600"], name=f"runner-{dead.id}", labels=labels)
    if then == "create-again":
        again = kit.cli("create", "-f", manifest, "--json")
        assert again.code == 0, again.text
        assert [c["Names"] for c in named_containers(kit, "r1-dangling")] == [[f"/runner-{again.json()['id']}"]]
        assert kit.cli("terminate", again.json()["id"], "--grace", "1").code == 0
    elif then == "gc":
        assert kit.cli("gc", "--json").json()["containers"] == [f"runner-{dead.id}"]
    else:
        live = kit.cli("create", "-f", kit.manifest(service("r1-other"), "other.yaml"), "--json").json()["id"]
        assert kit.cli("list").code == 0
        assert [c["Names"] for c in store_containers(kit)] == [[f"/runner-{live}"]]
        assert kit.cli("terminate", live, "--grace", "1").code == 0
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()
