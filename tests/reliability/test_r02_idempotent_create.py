"""R2 — `create` is idempotent: the same manifest and name twice, then two processes racing on one name.

Pass criterion (reliability.md R2): sequentially, the same run id, exit 0 and one container; racing,
every round ends with one container and one active record, the loser adopts (exit 0, "already …") or
is refused with "already active", and nothing prints a traceback.

Rounds: the table's 50 (~1 min here), the first one on a RUNNER_HOME with no database yet, so the
store's creation races too. Each round's run stays up (names differ per round) and all are terminated
together at the end.
"""

from __future__ import annotations

import json
import time

from oracle import check_consistency
from runkit import RunKit
from support import (
    assert_clean_output,
    finish,
    named_containers,
    records,
    service,
    spawn,
    terminate_all,
)

RACE_ROUNDS = 50


def test_sequential_create_returns_the_same_run(kit: RunKit, figures):
    manifest = kit.manifest(service("r2-seq"), "seq.yaml")
    first = kit.cli("create", "-f", manifest, "--wait", "--json")
    assert first.code == 0, first.text
    outputs = [first]
    for _ in range(3):
        again = kit.cli("create", "-f", manifest, "--json")
        outputs.append(again)
        assert again.code == 0, again.text
        assert again.json()["id"] == first.json()["id"]
        assert "already running" in again.err
    assert_clean_output(*(o.text for o in outputs))
    (container,) = named_containers(kit, "r2-seq")
    assert container["Names"] == [f"/runner-{first.json()['id']}"] and container["State"] == "running"
    assert len(records(kit)) == 1
    figures.add("R2", sequential_creates=len(outputs), same_run=len(outputs))
    assert kit.cli("terminate", first.json()["id"], "--grace", "1").code == 0
    kit.assert_clean()


def _race(kit: RunKit, rounds: int, figures) -> None:
    problems: list[str] = []
    adopted = refused = 0
    started_all = time.monotonic()
    for n in range(rounds):
        name = f"r2-race-{n}"
        manifest = kit.manifest(service(name), f"race-{n}.yaml")
        started = time.monotonic()
        procs = [spawn(kit, "create", "-f", manifest, "--json") for _ in range(2)]
        results = [finish(proc, started) for proc in procs]
        for result in results:
            assert_clean_output(result)
        codes = sorted(r.code for r in results)
        ids = {json.loads(r.out)["id"] for r in results if r.code == 0}
        if codes == [0, 0]:
            if len(ids) != 1:
                problems.append(f"round {n}: both succeeded with different runs {ids}")
            if not any("already" in r.err for r in results):
                problems.append(f"round {n}: neither process reported adopting the other's run")
            adopted += 1
        elif codes[0] == 0 and any("already active" in r.err for r in results if r.code != 0):
            refused += 1
        else:
            problems.append(f"round {n}: exit codes {codes}: {[r.err[-300:] for r in results]}")
        containers = named_containers(kit, name)
        active = [r for r in records(kit).values() if r.name == name and r.status not in
                  ("completed", "failed", "terminated")]
        if len(containers) != 1 or len(active) != 1:
            problems.append(f"round {n}: {len(containers)} container(s), {len(active)} active record(s)")
    figures.add("R2", race_rounds=rounds, adopted=adopted, refused=refused, failed_rounds=len(problems),
                seconds=round(time.monotonic() - started_all))
    assert problems == [], "\n".join(problems)
    assert kit.cli("list").code == 0
    assert check_consistency(kit) == []
    terminate_all(kit, [r.id for r in records(kit).values() if r.status == "running"])
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()


def test_two_processes_racing_on_one_name(kit: RunKit, figures):
    assert not (kit.home / "runner.db").exists(), "the first round must also race the store's creation"
    _race(kit, RACE_ROUNDS, figures)

