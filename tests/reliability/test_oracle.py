"""The consistency oracle can fail: each clause (a)–(e) fires on a state built to violate it, and the
reconcile (`runner list`) plus `runner gc --grace 0` that the contract promises make it pass again."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import docker
from oracle import check_consistency, orphans
from runkit import RunKit
from support import BUSYBOX, batch, run


def test_each_clause_fires_and_reconcile_plus_gc_repairs(kit: RunKit, docker_client: docker.DockerClient,
                                                         test_labels: dict[str, str]):
    live = kit.create(batch("oracle-live", "sleep 600"))["id"]
    gone = kit.create(batch("oracle-gone", "sleep 600"))["id"]
    assert check_consistency(kit) == []

    # (a) a record that claims to run without its container
    kit.container(gone).remove(force=True)
    # (b) a container of this store that belongs to no record
    stray = docker_client.containers.create(BUSYBOX, ["true"], name=f"runner-0rphan{os.getpid() % 10000:04d}",
                                            labels={"ai.runner.store": kit.store_id, "ai.runner.run-id": "0rphan",
                                                    "ai.runner.managed": "true", **test_labels})
    # (c) a creator killed right after recording its intent
    crashed = run(kit, "create", "-f", kit.manifest(batch("oracle-crash", "sleep 600"), "crash.yaml"),
                  env={"RUNNER_FAULT_POINT": "after_intent_insert"})
    assert crashed.code == -9, crashed.text
    # (e) a staging dir abandoned by a dead publisher, an hour old
    artifact = kit.home / "artifacts" / "artifact" / "oracle"
    (artifact / "versions").mkdir(parents=True)  # what ArtifactLayout.ensure() makes before staging
    staging = artifact / ".staging" / "dead-publisher"
    staging.mkdir(parents=True)
    hour_ago = time.time() - 3600
    os.utime(staging, (hour_ago, hour_ago))

    problems = check_consistency(kit, grace_s=0)
    text = "\n".join(problems)
    assert f"(a) run {gone} claims to be running but has no container" in text
    assert f"(b) container {stray.name} (created) has no run record" in text
    assert "(c) run" in text and "stuck pending" in text
    assert "(e) stale .staging entry artifacts/artifact/oracle/.staging/dead-publisher" in text
    assert orphans(kit) == [stray.name]
    assert not any(p.startswith("(d)") for p in problems)
    # with the default 60 s grace the young orphan is tolerated (gc would wait for it), the rest is not
    assert not any(p.startswith("(b)") for p in check_consistency(kit))

    assert kit.cli("list").code == 0  # reconcile: (a) and (c) resolved with a reason
    assert kit.cli("gc", "--grace", "0").code == 0  # the orphan and the stale staging dir go
    assert check_consistency(kit, grace_s=0) == []
    assert kit.listing()[gone]["reason"] == "container disappeared"
    assert kit.cli("terminate", live, "--grace", "1").code == 0
    kit.assert_clean()


def test_integrity_and_record_invariants_fire_on_a_damaged_copy(kit: RunKit, tmp_path: Path):
    run_id = kit.create(batch("oracle-db", "exit 3"))["id"]
    kit.wait_exit(run_id)
    assert kit.listing()[run_id]["status"] == "failed"
    copy = tmp_path / "copy"
    copy.mkdir()

    def snapshot() -> Path:
        with sqlite3.connect(kit.home / "runner.db") as source, sqlite3.connect(copy / "runner.db") as target:
            source.backup(target)
        source.close()
        target.close()
        return copy

    with sqlite3.connect(snapshot() / "runner.db") as conn:  # a terminal record without its reason
        conn.execute("UPDATE runs SET reason = NULL WHERE id = ?", (run_id,))
    conn.close()
    assert any("without a reason" in p for p in check_consistency(copy, kit.store_id))

    (copy / "runner.db").unlink()
    snapshot()
    raw = bytearray((copy / "runner.db").read_bytes())
    page = 4096
    raw[page + 8: page * 2] = b"\xa5" * (page - 8)  # scribble over the second page's cells
    (copy / "runner.db").write_bytes(bytes(raw))
    damaged = [p for p in check_consistency(copy, kit.store_id) if p.startswith("(d)")]
    assert damaged, "a scribbled page must fail the integrity check"
    shutil.rmtree(copy)
    kit.assert_clean()
