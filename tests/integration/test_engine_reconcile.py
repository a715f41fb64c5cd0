"""Reconcile on the real engine: containers removed, stopped or killed behind the runner's back are
reported as what happened (exit codes read from the engine) by every reading command, and `gc`
removes only this store's orphans, only after the grace period.
"""

from __future__ import annotations

import uuid

import docker
import pytest
from runkit import RunKit, act_behind_the_runners_back

BUSYBOX = "runner-test/busybox:1"
SLEEPER = f"""
    name: sleeper
    resources: {{preset: cpu-small}}
    image: {BUSYBOX}
    run:
      - command: sleep 600
"""


@pytest.mark.parametrize(("action", "code", "reason"), [
    ("rm", None, "container disappeared"),
    ("stop", 143, "killed by signal 15 (SIGTERM)"),
    ("kill", 137, "killed (SIGKILL)"),
], ids=["docker-rm-f", "docker-stop", "docker-kill"])
def test_behind_our_back_list_reports_what_happened(kit: RunKit, action: str, code: int | None, reason: str):
    runs = [kit.create(SLEEPER, "--name", f"{action}-{n}")["id"] for n in range(3)]
    for run_id in runs:
        assert kit.container(run_id).status == "running"
        engine_code = act_behind_the_runners_back(kit.container(run_id), action)
        assert engine_code == code
    listing = kit.listing()
    for run_id in runs:
        run = listing[run_id]
        assert (run["status"], run["exit_code"]) == ("failed", code)
        assert run["reason"].startswith(reason), run["reason"]
    kit.assert_clean()


@pytest.mark.parametrize("command", ["describe", "logs", "terminate"])
def test_every_command_reconciles_a_removed_container(kit: RunKit, command: str):
    run_id = kit.create(SLEEPER)["id"]
    kit.container(run_id).remove(force=True)
    result = kit.cli(command, run_id)
    assert result.code == 0, result.text
    with kit.store_connection() as conn:  # read the record, not another reconciling command
        row = conn.execute("SELECT status, reason, exit_code FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert tuple(row) == ("failed", "container disappeared", None)
    if command == "terminate":
        assert "failed — container disappeared" in result.out
    kit.assert_clean()


@pytest.mark.parametrize(("point", "container_made"), [("after_intent_insert", False),
                                                      ("after_container_create", True)])
def test_a_create_killed_midway_is_recorded_first_and_cleaned_up(kit: RunKit, point: str, container_made: bool):
    """The record exists before the container; a creator killed at either point is noticed (its pid is
    gone) and what it made is removed."""
    crashed = kit.run("create", "-f", kit.manifest(SLEEPER), env={"RUNNER_FAULT_POINT": point})
    assert crashed.code == -9, crashed.text  # the fault hook SIGKILLs the creating process
    with kit.store_connection() as conn:
        ((run_id, status),) = conn.execute("SELECT id, status FROM runs").fetchall()
    assert status == ("initializing" if container_made else "pending")
    assert (kit.container(run_id) is not None) == container_made
    run = kit.listing()[run_id]
    assert run["status"] == "failed" and run["reason"].startswith("interrupted while creating")
    kit.assert_clean()


def test_terminate_of_a_run_that_already_ended_reports_its_real_outcome(kit: RunKit):
    run_id = kit.create(SLEEPER.replace("sleep 600", "echo done"))["id"]
    assert kit.wait_exit(run_id) == 0
    result = kit.cli("terminate", run_id)
    assert result.code == 0, result.text
    run = kit.describe(run_id)
    assert (run["status"], run["reason"], run["exit_code"]) == ("completed", "exit code 0", 0)
    kit.assert_clean()


def test_gc_removes_only_this_stores_orphans_after_the_grace(kit: RunKit, docker_client: docker.DockerClient,
                                                             test_labels: dict[str, str]):
    live = kit.create(SLEEPER)["id"]
    ours = {"ai.runner.managed": "true", "ai.runner.store": kit.store_id, "ai.runner.run-id": "0rphan0000"}
    orphan = docker_client.containers.create(BUSYBOX, ["true"], labels={**ours, **test_labels})
    foreign = docker_client.containers.create(
        BUSYBOX, ["true"], labels={**ours, "ai.runner.store": str(uuid.uuid4()), **test_labels})
    unlabelled = docker_client.containers.create(BUSYBOX, ["true"], labels=test_labels)

    young = kit.cli("gc", "--json")  # default grace 60 s: the orphan is too young to be collected
    assert young.code == 0, young.text
    assert young.json()["containers"] == [], young.out
    dry = kit.cli("gc", "--grace", "0", "--dry-run", "--json")
    assert dry.json()["containers"] == [orphan.name], dry.out

    collected = kit.cli("gc", "--grace", "0", "--json")
    assert collected.code == 0, collected.text
    assert collected.json()["containers"] == [orphan.name], collected.out
    # sparse: other tests' containers may come and go meanwhile, and a full listing inspects each one
    names = {c.attrs["Names"][0].lstrip("/") for c in docker_client.containers.list(all=True, sparse=True)}
    assert orphan.name not in names
    assert {foreign.name, unlabelled.name, f"runner-{live}"} <= names
    assert kit.listing()[live]["status"] == "running"
    assert kit.cli("terminate", live).code == 0
    kit.assert_clean()
