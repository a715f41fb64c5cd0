"""The run commands as a user drives them: an unreachable engine (exit 3, nothing written), the JSON of
`describe` and `list`, `logs` (follow, tail, after the run), `create` adopting or refusing a name,
and `create --wait` when the container dies or never gets ready.
"""

from __future__ import annotations

import gc
import hashlib
import sqlite3
from pathlib import Path

import pytest
from runkit import RunKit, free_port

BUSYBOX = "runner-test/busybox:1"
UNREACHABLE = "unix:///nonexistent.sock"


def _sleeper(name: str = "sleeper", command: str = "sleep 600") -> str:
    return f"""
        name: {name}
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        run:
          - command: {command}
    """


def _snapshot(home: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file under RUNNER_HOME, except SQLite's shared-memory index and
    an empty write-ahead log (a reader's connection creates both; neither holds data)."""
    return {str(p.relative_to(home)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(home.rglob("*"))
            if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and not p.stat().st_size)}


def test_unreachable_engine_exits_3_naming_the_address_and_writes_nothing(kit: RunKit):
    run_id = kit.create(_sleeper())["id"]
    manifest = kit.manifest(_sleeper("another"), "another.yaml")
    gc.collect()  # close this process's earlier store connections, then fold the WAL into the database
    with sqlite3.connect(kit.home / "runner.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _snapshot(kit.home)
    env = {"DOCKER_HOST": UNREACHABLE}
    commands = [("create", "-f", manifest), ("list",), ("list", "--json"), ("describe", run_id),
                ("logs", run_id), ("terminate", run_id), ("gc",)]
    for args in commands:
        result = kit.cli(*args, env=env)
        assert result.code == 3, (args, result.text)
        assert UNREACHABLE in result.err and "DOCKER_HOST" in result.err, (args, result.err)
        assert "Traceback" not in result.text
    installed = kit.run("list", env=env)  # the installed binary says the same
    assert installed.code == 3 and UNREACHABLE in installed.err
    assert _snapshot(kit.home) == before, "an unreachable engine must not change the store"

    via_env = kit.cli("describe", run_id, "--json", env={"DOCKER_HOST": "unix:///var/run/docker.sock"})
    assert via_env.code == 0 and via_env.json()["status"] == "running"  # DOCKER_HOST names the engine
    assert kit.describe(run_id)["status"] == "running"  # and the default socket: nothing was lost
    assert kit.cli("terminate", run_id).code == 0
    kit.assert_clean()


def test_describe_and_list_json(kit: RunKit):
    port = free_port()
    result = kit.cli("create", "-f", kit.manifest(f"""
        name: described
        description: a run to describe
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        env:
          MODE: demo
          API_KEY: {{value: not-shown-{port}, secret: true}}
        run:
          - command: |
              mkdir -p /www /out && echo ok > /www/index.html && echo result > /out/r.txt
              exec httpd -f -p {port} -h /www
        ports:
          - {{name: web, type: http, port: {port}}}
        export:
          /out: artifact://described-out
    """), "--wait", "--json")
    assert result.code == 0, result.text
    run_id = result.json()["id"]
    url = f"http://127.0.0.1:{port}"

    described = kit.describe(run_id)
    assert (described["status"], described["reason"], described["exit_code"]) == ("running", None, None)
    assert {"image", "imports", "start", "ready"} <= set(described["phases"])
    assert all(seconds >= 0 for seconds in described["phases"].values())
    assert described["image"] == BUSYBOX and described["description"] == "a run to describe"
    assert described["resources"] == {"cpus": 2, "memory": "4Gi", "shm_size": "2Gi", "gpus": 0}
    assert described["endpoints"] == {"web": url} and described["ready"] is True
    assert described["env"]["MODE"] == "demo" and described["env"]["API_KEY"] == "***"
    assert described["imports"] == []
    assert described["exports"] == [{"target": "/out", "artifact": "artifact:described-out"}]
    assert f"not-shown-{port}" not in kit.cli("describe", run_id, "--json").out

    listed = kit.cli("list", "--json").json()
    assert [row["id"] for row in listed] == [run_id]
    assert {"id", "name", "status", "reason", "exit_code", "created", "endpoints"} <= set(listed[0])
    assert listed[0]["endpoints"] == {"web": url}
    table = kit.cli("list").out.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "CREATED", "ENDPOINTS"]
    assert run_id in table[1] and "running" in table[1] and f"web={url}" in table[1]

    assert kit.cli("terminate", run_id).code == 0
    ended = kit.describe(run_id)
    assert (ended["status"], ended["reason"], ended["exit_code"]) == ("terminated", "terminated by user", 143)
    (export,) = ended["exports"]
    assert (export["artifact"], export["version"], export["error"]) == ("artifact:described-out", 1, None)
    assert "terminated" in kit.cli("list", "--all").out
    kit.assert_clean()


def test_logs_follow_tail_and_after_the_run(kit: RunKit):
    printer = "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done"
    run_id = kit.create(_sleeper("printer", printer))["id"]
    followed = kit.cli("logs", run_id, "-f")  # returns only when the run has ended
    assert followed.code == 0, followed.text
    assert [line for line in followed.out.splitlines() if line.startswith("line")] == [f"line{i}" for i in range(1, 6)]
    assert kit.container(run_id) is None, "after -f the ended run was finalized"
    with kit.store_connection() as conn:
        assert conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == "completed"
    tail = kit.cli("logs", run_id, "--tail", "2")
    assert tail.out.splitlines() == ["line5", "[runner] all steps completed"]

    kept = kit.create(_sleeper("kept", "echo before-terminate; sleep 600"))["id"]
    live_tail = kit.cli("logs", kept, "--tail", "1")
    assert live_tail.code == 0
    assert kit.cli("terminate", kept, "--grace", "1").code == 0
    after = kit.cli("logs", kept)
    assert after.code == 0 and "before-terminate" in after.out
    kit.assert_clean()


def test_create_adopts_the_same_run_and_refuses_a_different_manifest(kit: RunKit):
    first = kit.create(_sleeper("named"))
    again = kit.cli("create", "-f", kit.manifest(_sleeper("named"), "same.yaml"), "--json")
    assert again.code == 0, again.text
    assert again.json()["id"] == first["id"]
    assert "already running" in again.err
    containers = kit.client.containers.list(all=True, filters={"label": f"ai.runner.store={kit.store_id}"})
    assert [c.name for c in containers] == [f"runner-{first['id']}"]

    other = kit.cli("create", "-f", kit.manifest(_sleeper("named", "sleep 601"), "other.yaml"))
    assert other.code == 2, other.text
    assert "already active" in other.err and first["id"] in other.err
    assert list(kit.listing()) == [first["id"]]
    assert kit.cli("terminate", first["id"]).code == 0
    kit.assert_clean()


def test_create_reuses_the_name_of_a_run_that_ended_unobserved(kit: RunKit):
    quick = kit.create(_sleeper("quick", "echo done"))["id"]
    assert kit.wait_exit(quick) == 0  # ended; no runner command has looked since
    result = kit.cli("create", "-f", kit.manifest(_sleeper("quick", "echo changed"), "changed.yaml"), "--json")
    assert result.code == 0, result.text
    assert result.json()["id"] != quick
    assert kit.wait_exit(result.json()["id"]) == 0
    listing = kit.listing()
    assert listing[quick]["status"] == listing[result.json()["id"]]["status"] == "completed"
    kit.assert_clean()


@pytest.mark.parametrize("delay", ["0", "1"], ids=["dies-at-once", "dies-after-1s"])
def test_create_wait_reports_a_container_that_dies(kit: RunKit, delay: str):
    result = kit.cli("create", "-f", kit.manifest(f"""
        name: dies
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        run:
          - command: |
              sleep {delay}
              echo "fatal - config missing"
              exit 3
        ports:
          - {{name: web, type: http, port: 8080, host_port: 0}}
    """), "--wait")
    assert result.code == 1, result.text
    assert "failed" in result.out and "exit code 3" in result.out
    assert "log lines:" in result.err and "fatal - config missing" in result.err
    (run,) = kit.listing().values()
    assert (run["status"], run["exit_code"], run["ready"]) == ("failed", 3, False)
    kit.assert_clean()


def test_create_wait_timeout_leaves_the_run_going(kit: RunKit):
    result = kit.cli("create", "-f", kit.manifest(f"""
        name: never-ready
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        run:
          - command: sleep 600
        ports:
          - {{name: web, type: http, port: 8080, host_port: 0}}
    """), "--wait", "--timeout", "1")
    assert result.code == 1, result.text
    assert "not ready after 1s" in result.err
    (run,) = kit.listing().values()
    assert run["status"] == "running" and run["ready"] is False
    assert kit.cli("terminate", run["id"], "--grace", "1").code == 0
    kit.assert_clean()
