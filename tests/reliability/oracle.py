"""The consistency oracle of reliability.md §7, used after every injected fault.

`check_consistency(kit_or_home, store_id)` looks at the run store (read-only, straight from the
SQLite file, never through a reconciling runner command) and at the engine (docker-py, by the
`ai.runner.store` label) and returns every violation it finds, as sentences; an empty list means
consistent. Callers run one `runner list` first (the reconcile the contract promises), and for the
strict form of (b) and (e) one `runner gc --grace 0` with `grace_s=0`.

(a) every `running`/`idle` record has exactly one container carrying its run id, and Docker says
    that container is running; no active record has more than one container; every container's
    name and spec-hash label match its record (ownership labels).
(b) every labelled container and volume of this store belongs to an active record, or is younger
    than `grace_s` (an orphan that `gc` would collect later).
(c) no record is `pending`/`initializing`/`stopping` while the process that owns it is dead
    (stronger than §7's "older than the grace": every reconcile handles a dead owner at once).
(d) `PRAGMA integrity_check` is `ok`, statuses are in the vocabulary, a name is active at most
    once, and every terminal record carries a reason and a finish time ("every terminal state
    carries a reason").
(e) no artifact staging dir, trash entry or `LATEST.tmp.*` file older than `grace_s` remains.

The oracle is deliberately independent of runner's own helpers (it re-implements the owner
liveness test from /proc), so a bug there cannot hide itself; tests/reliability/test_oracle.py
shows that each clause fires on a state built to violate it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

LABEL_STORE = "ai.runner.store"
LABEL_RUN_ID = "ai.runner.run-id"
LABEL_SPEC_HASH = "ai.runner.spec-hash"
ACTIVE = ("pending", "initializing", "running", "idle", "stopping")
TERMINAL = ("completed", "failed", "terminated")
TRANSIENT = ("pending", "initializing", "stopping")
LIVE = ("running", "idle")


@dataclass(frozen=True)
class Record:
    id: str
    name: str
    status: str
    reason: str | None
    exit_code: int | None
    spec_hash: str
    finished_at: float | None
    owner_pid: int | None
    owner_token: str | None
    container_id: str | None


def _home_and_client(target: Any) -> tuple[Path, docker.DockerClient]:
    if isinstance(target, (str, Path)):
        return Path(target), docker.from_env(timeout=60)
    return Path(target.home), target.client


def read_records(home: Path) -> list[Record]:
    """Every run record, read-only (no reconcile, no write, no WAL checkpoint)."""
    db = home / "runner.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT id, name, status, reason, exit_code, spec_hash, finished_at, owner_pid, "
                            "owner_boot_id, container_id FROM runs").fetchall()
    finally:
        conn.close()
    return [Record(*row) for row in rows]


def read_store_id(home: Path) -> str | None:
    db = home / "runner.db"
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else None


def owner_alive(pid: int | None, token: str | None) -> bool:
    """Is the process recorded as (pid, "<boot id>:<start ticks>") still the same live process?"""
    if not pid:
        return False
    boot, _, ticks = (token or "").partition(":")
    try:
        current_boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        current_boot = ""
    if boot and current_boot and boot != current_boot:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":  # a zombie has exited; only its parent has not reaped it yet
        return False
    return not ticks or (len(fields) > 19 and fields[19] == ticks)


def _integrity(home: Path) -> list[str]:
    db = home / "runner.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return _integrity_of(conn)
    except sqlite3.DatabaseError as exc:
        return [f"(d) the store cannot be read: {exc}"]
    finally:
        conn.close()


def _integrity_of(conn: sqlite3.Connection) -> list[str]:
    result = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    every = ACTIVE + TERMINAL
    bad_status = conn.execute(f"SELECT id, status FROM runs WHERE status NOT IN ({', '.join('?' * len(every))})",
                              every).fetchall()
    doubles = conn.execute(f"SELECT name, COUNT(*) FROM runs WHERE status IN ({', '.join('?' * len(ACTIVE))}) "
                           "GROUP BY name HAVING COUNT(*) > 1", ACTIVE).fetchall()
    unreasoned = conn.execute(f"SELECT id, status FROM runs WHERE status IN ({', '.join('?' * len(TERMINAL))}) "
                              "AND (reason IS NULL OR reason = '' OR finished_at IS NULL)", TERMINAL).fetchall()
    bad_json = [run_id for run_id, *blobs in conn.execute("SELECT id, endpoints, phases, details FROM runs")
                if not all(_is_json(blob) for blob in blobs)]
    problems = [] if result == ["ok"] else [f"(d) PRAGMA integrity_check: {result[:5]}"]
    problems += [f"(d) run {run_id} has status {status!r}, not in the vocabulary" for run_id, status in bad_status]
    problems += [f"(d) name {name!r} is active in {count} records" for name, count in doubles]
    problems += [f"(d) run {run_id} is {status} without a reason or a finish time" for run_id, status in unreasoned]
    problems += [f"(d) run {run_id} has a JSON column that does not parse" for run_id in bad_json]
    return problems


def _is_json(blob: Any) -> bool:
    try:
        json.loads(blob)
    except (TypeError, ValueError):
        return False
    return True


def _staging(home: Path, grace_s: float) -> list[str]:
    root = home / "artifacts"
    if not root.is_dir():
        return []
    cutoff = time.time() - grace_s
    problems = []
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        if here.name in (".staging", ".trash"):
            for child in [*dirnames, *filenames]:
                if os.lstat(here / child).st_mtime <= cutoff:
                    problems.append(f"(e) stale {here.name} entry {(here / child).relative_to(home)}")
            dirnames[:] = []
            continue
        if "versions" in dirnames:
            dirnames.remove("versions")  # published versions hold user files; nothing of ours in there
        problems += [f"(e) stale {(here / name).relative_to(home)}" for name in filenames
                     if name.startswith("LATEST.tmp.") and os.lstat(here / name).st_mtime <= cutoff]
    return problems


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    state: str  # created | running | exited | ...
    labels: dict[str, str]
    created: float


def list_containers(client: docker.DockerClient, store_id: str) -> list[Container]:
    """This store's containers, from one engine listing (no per-container inspect that could race)."""
    items = client.api.containers(all=True, filters={"label": f"{LABEL_STORE}={store_id}"})
    return [Container(item["Id"], (item.get("Names") or ["/"])[0].lstrip("/"), item.get("State", ""),
                      dict(item.get("Labels") or {}), float(item.get("Created") or 0)) for item in items]


def list_volumes(client: docker.DockerClient, store_id: str) -> list[dict[str, Any]]:
    return list((client.api.volumes(filters={"label": f"{LABEL_STORE}={store_id}"}) or {}).get("Volumes") or [])


def check_consistency(target: Any, store_id: str | None = None, *, grace_s: float = 60.0) -> list[str]:
    """Every violation of (a)–(e) for `target` (a RunKit, or a RUNNER_HOME path); [] = consistent."""
    home, client = _home_and_client(target)
    store_id = store_id or read_store_id(home)
    if store_id is None:
        return []  # nothing was ever recorded; the engine check needs a store id to scope it
    records = {record.id: record for record in read_records(home)}
    problems: list[str] = []
    now = time.time()

    by_run: dict[str, list[Container]] = {}
    for container in list_containers(client, store_id):
        run_id = container.labels.get(LABEL_RUN_ID, "")
        by_run.setdefault(run_id, []).append(container)
        record = records.get(run_id)
        young = now - container.created < grace_s
        if record is None and not young:
            problems.append(f"(b) container {container.name} ({container.state}) has no run record")
        elif record is not None and record.status in TERMINAL and not young:
            problems.append(f"(b) container {container.name} ({container.state}) belongs to {record.status} "
                            f"run {run_id}")
        if record is not None:
            if container.name != f"runner-{run_id}":
                problems.append(f"(a) container {container.name} is not named after run {run_id}")
            if container.labels.get(LABEL_SPEC_HASH) != record.spec_hash:
                problems.append(f"(a) container {container.name} has another spec hash than run {run_id}")
    for volume in list_volumes(client, store_id):
        run_id = (volume.get("Labels") or {}).get(LABEL_RUN_ID, "")
        record = records.get(run_id)
        if (record is None or record.status in TERMINAL) and grace_s <= 0:
            problems.append(f"(b) volume {volume.get('Name')} belongs to no active run "
                            f"({record.status if record else 'no record'})")

    for record in records.values():
        mine = by_run.get(record.id, [])
        if record.status in ACTIVE and len(mine) > 1:
            problems.append(f"(a) {record.status} run {record.id} has {len(mine)} containers")
        if record.status in LIVE:
            if not mine:
                problems.append(f"(a) run {record.id} claims to be {record.status} but has no container")
            elif mine[0].state != "running":
                problems.append(f"(a) run {record.id} claims to be {record.status} but its container is "
                                f"{mine[0].state}")
        if record.status in TRANSIENT and not owner_alive(record.owner_pid, record.owner_token):
            problems.append(f"(c) run {record.id} is stuck {record.status}: its owner (pid {record.owner_pid}) "
                            "is dead")

    problems += _integrity(home)
    problems += _staging(home, grace_s)
    return problems


def orphans(target: Any, store_id: str | None = None) -> list[str]:
    """Containers of this store whose run is not active (what `list` reports and `gc` collects)."""
    home, client = _home_and_client(target)
    store_id = store_id or read_store_id(home)
    records = {record.id: record for record in read_records(home)}
    found = []
    if store_id is None:
        return found
    for container in list_containers(client, store_id):
        record = records.get(container.labels.get(LABEL_RUN_ID, ""))
        if record is None or record.status in TERMINAL:
            found.append(container.name)
    return found
