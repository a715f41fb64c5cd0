"""R15 — the engine is unreachable: every command exits 3, names the address, and writes nothing.

Pass criterion (reliability.md R15): a distinct exit code (3), "cannot reach the Docker engine at …",
0 writes to the store. runner does not print a stale table marked UNKNOWN: it refuses to answer
without the engine (exit 3), which the table allows ("distinct exit code … 0 DB writes").

tests/integration/test_cli_runs.py::test_unreachable_engine_exits_3_naming_the_address_and_writes_nothing
proves it for create/list/describe/logs/terminate/gc with a missing socket. This file adds the other
ways an engine is unreachable — a refused TCP port, a path that is not a socket, a socket that hangs
up at once, one that accepts and never answers (bounded by runner's request timeout) — and a first
`create` on a machine where RUNNER_HOME does not exist yet (it must stay absent).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runkit import RunKit
from support import assert_clean_output, batch, run

HUNG_LIMIT_S = 20.0  # runner's engine requests time out after 10-15 s


def _snapshot(home: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(home)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(home.rglob("*"))
            if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and not p.stat().st_size)}


@contextlib.contextmanager
def _unix_server(path: Path, *, answer: bool) -> Iterator[None]:
    """A unix socket that accepts connections and then hangs up at once (answer=False: never answers)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if answer:
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def _settle_store(kit: RunKit) -> None:
    gc.collect()
    with sqlite3.connect(kit.home / "runner.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize("kind", ["tcp-refused", "not-a-socket", "hangs-up", "never-answers"])
def test_every_way_of_being_unreachable(kit: RunKit, tmp_path: Path, kind: str, figures):
    run_id = kit.create(batch("r15", "sleep 600"))["id"]
    manifest = kit.manifest(batch("r15-other", "sleep 600"), "other.yaml")
    _settle_store(kit)
    before = _snapshot(kit.home)
    sock = tmp_path / "engine.sock"
    address = "tcp://127.0.0.1:1" if kind == "tcp-refused" else f"unix://{sock}"
    commands = [("list",), ("create", "-f", manifest), ("terminate", run_id)]
    if kind == "never-answers":
        commands = [("list",)]  # each command waits out the request timeout: one is enough to bound it
    if kind == "not-a-socket":
        sock.write_text("not a socket\n")
    with _unix_server(sock, answer=True) if kind == "hangs-up" else \
            _unix_server(sock, answer=False) if kind == "never-answers" else contextlib.nullcontext():
        for args in commands:
            started = time.monotonic()
            result = run(kit, *args, env={"DOCKER_HOST": address}, timeout=120)
            took = time.monotonic() - started
            assert result.code == 3, (kind, args, result.text)
            assert f"cannot reach the Docker engine at {address}" in result.err, (kind, args, result.err)
            assert_clean_output(result)
            assert took < HUNG_LIMIT_S, f"{kind} {args}: {took:.1f}s"
    assert _snapshot(kit.home) == before, "an unreachable engine must not change the store"
    figures.add("R15", unreachable_commands=len(commands))
    assert kit.describe(run_id)["status"] == "running"
    assert kit.cli("terminate", run_id, "--grace", "1").code == 0
    kit.assert_clean()


def test_first_create_on_a_new_machine_creates_no_home(kit: RunKit, tmp_path: Path, figures):
    home = tmp_path / "new-home"
    manifest = kit.manifest(batch("r15-new", "sleep 600"), "new.yaml")
    for args in (("create", "-f", manifest), ("list",), ("gc",)):
        result = run(kit, *args, env={"DOCKER_HOST": "tcp://127.0.0.1:1", "RUNNER_HOME": str(home)})
        assert result.code == (3 if args[0] == "create" else 0), (args, result.text)
        assert_clean_output(result)
    assert not home.exists(), "nothing may be written when the engine cannot be reached"
    figures.add("R15", unreachable_commands=3)
