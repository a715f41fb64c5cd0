"""Run records in SQLite: the history of every run, and the intent written before anything exists.

Docker is the truth for live state; this store keeps what Docker forgets (names, reasons, exit
codes after removal, phase timings, exports). Rules (reliability.md §3): WAL, a 30 s busy
timeout, `BEGIN IMMEDIATE` for every read-modify-write, never a transaction held across a Docker
call, parameterised SQL only, terminal states immutable, the database file 0600 in a 0700 dir.
A run name is unique among *active* runs (a partial unique index), so a second `create` with the
same name either adopts the active run (same spec) or is refused (different spec).
SQL strings are built only from the constant column list; every value is a bound parameter.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import NotFoundError, RunnerError, UsageError
from runner.ids import new_store_id

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
ACTIVE_STATUSES = ("pending", "initializing", "running", "idle", "stopping")
TERMINAL_STATUSES = ("completed", "failed", "terminated")
ALL_STATUSES = ACTIVE_STATUSES + TERMINAL_STATUSES

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in ALL_STATUSES)})),
    reason TEXT,
    exit_code INTEGER,
    run_type TEXT NOT NULL DEFAULT 'batch',
    spec_hash TEXT NOT NULL,
    image TEXT NOT NULL DEFAULT '',
    manifest_path TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    ready_at REAL,
    finished_at REAL,
    deadline REAL,
    container_id TEXT,
    owner_pid INTEGER,
    owner_boot_id TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    endpoints TEXT NOT NULL DEFAULT '[]',
    phases TEXT NOT NULL DEFAULT '{{}}',
    details TEXT NOT NULL DEFAULT '{{}}'
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_active_name ON runs(name)
    WHERE status IN ({", ".join(repr(s) for s in ACTIVE_STATUSES)});
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
CREATE INDEX IF NOT EXISTS runs_active ON runs(status) WHERE status IN ({", ".join(repr(s) for s in ACTIVE_STATUSES)});
"""

_ACTIVE_SQL = "(" + ", ".join(repr(s) for s in ACTIVE_STATUSES) + ")"
_TERMINAL_SQL = "(" + ", ".join(repr(s) for s in TERMINAL_STATUSES) + ")"
_COLUMNS = (
    "id", "name", "status", "reason", "exit_code", "run_type", "spec_hash", "image", "manifest_path",
    "description", "created_at", "updated_at", "started_at", "ready_at", "finished_at", "deadline",
    "container_id", "owner_pid", "owner_boot_id", "stop_requested", "endpoints", "phases", "details",
)
_JSON_COLUMNS = ("endpoints", "phases", "details")


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    status: str
    spec_hash: str
    created_at: float
    updated_at: float
    reason: str | None = None
    exit_code: int | None = None
    run_type: str = "batch"
    image: str = ""
    manifest_path: str = ""
    description: str = ""
    started_at: float | None = None
    ready_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None
    container_id: str | None = None
    owner_pid: int | None = None
    owner_boot_id: str | None = None
    stop_requested: bool = False
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def container_name(self) -> str:
        return f"runner-{self.id}"


class StoreError(RunnerError):
    """The run store could not be read or written."""


class NameConflictError(UsageError):
    """An active run already has this name but a different spec."""


def boot_id() -> str:
    """Identifies this boot, so a pid recorded before a reboot is not mistaken for a live process."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if it is gone.

    A zombie (killed, not yet reaped by its parent) or dead process counts as gone: it still has a
    /proc entry with the same start time, but it will never finish what it recorded.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may contain spaces and parentheses
    if not fields or fields[0] in ("Z", "X", "x"):
        return None
    return fields[19] if len(fields) > 19 else None


def owner_token(pid: int | None = None) -> str:
    """Identifies a process across pid reuse and reboots: "<boot id>:<start ticks>"."""
    return f"{boot_id()}:{_start_ticks(pid or os.getpid()) or ''}"


def process_alive(pid: int | None, token: str | None) -> bool:
    """Is the process that wrote (pid, owner_token) still running (not a reused pid, not before a reboot)?"""
    if pid is None:
        return False
    boot, _, start = (token or "").partition(":")
    if boot and boot != boot_id():
        return False
    if start:
        return _start_ticks(pid) == start
    if Path("/proc/self/stat").exists():  # Linux: gone or a zombie
        return _start_ticks(pid) is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """One connection per process; opened lazily; created only by writers (`create=True`)."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        self._create = create
        self._conn: sqlite3.Connection | None = None
        self._store_id: str | None = None

    # -- connection -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if not self._create and not self.exists():
            raise NotFoundError("no runs yet", hint="create one with `runner create -f MANIFEST`")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = not self.path.exists()
        if fresh:
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the run store {self.path}: {exc}") from None
        self._conn = conn
        self._migrate(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        with self._write(conn):
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                # statement by statement: executescript() would commit the open transaction
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('store_id', ?)", (new_store_id(),))
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A short `BEGIN IMMEDIATE` transaction (never held across a Docker call)."""
        conn = conn or self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"the run store is busy or unwritable: {exc}",
                             hint="another runner command may be stuck; retry") from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def store_id(self) -> str:
        if self._store_id is None:
            row = self._connect().execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
            self._store_id = str(row[0])
        return self._store_id

    # -- writes ---------------------------------------------------------------------------------
    def insert_intent(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Record a new run before anything exists. Returns (record, created).

        If an active run has the same name: the same spec hash adopts it (created=False); a
        different one raises NameConflictError.
        """
        with self._write() as conn:
            row = conn.execute(  # statuses spelled out, so SQLite can use the partial index runs_active_name
                f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE name = ? AND status IN {_ACTIVE_SQL}", (record.name,),
            ).fetchone()
            if row is not None:
                existing = _record(row)
                if existing.spec_hash != record.spec_hash:
                    raise NameConflictError(
                        f"a run named {record.name!r} is already active ({existing.id}, {existing.status}) "
                        "with a different manifest",
                        hint=f"terminate it (`runner terminate {existing.id}`) or choose another --name",
                    )
                return existing, False
            values = _row(record)
            conn.execute(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                         values)
        return record, True

    def update(self, run_id: str, *, expect: tuple[str, ...] | None = None,
               merge: Mapping[str, Mapping[str, Any]] | None = None, **changes: Any) -> RunRecord | None:
        """Apply `changes` if the run's status is in `expect` (any non-terminal status by default).

        `merge` adds keys to JSON columns (phases, details) in the same transaction, so a state change
        and what was learned on the way to it are one commit. Returns the updated record, or None when
        the guard failed (someone else moved it on). Terminal records never change, except their details.
        """
        allowed = expect if expect is not None else ACTIVE_STATUSES
        changes["updated_at"] = time.time()
        with self._write() as conn:
            for column, values in (merge or {}).items():
                if column not in ("phases", "details"):
                    raise ValueError(column)
                row = conn.execute(f"SELECT {column} FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is not None and values:
                    changes[column] = {**json.loads(row[0]), **values}
            assignments = ", ".join(f"{key} = ?" for key in changes)
            bound = [json.dumps(v) if k in _JSON_COLUMNS else v for k, v in changes.items()]
            cursor = conn.execute(
                f"UPDATE runs SET {assignments} WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
                (*bound, run_id, *allowed),
            )
            if cursor.rowcount == 0:
                return None
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _record(row)

    def merge_json(self, run_id: str, column: str, values: Mapping[str, Any]) -> None:
        """Merge keys into a JSON column (phases, details) in one read-modify-write transaction."""
        if column not in ("phases", "details"):
            raise ValueError(column)
        with self._write() as conn:
            row = conn.execute(f"SELECT {column} FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0]), **values}
            conn.execute(f"UPDATE runs SET {column} = ?, updated_at = ? WHERE id = ?",
                         (json.dumps(merged), time.time(), run_id))

    def delete(self, run_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- reads ----------------------------------------------------------------------------------
    def get(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix (≥ 4 characters) or the name of an active run."""
        conn = self._connect()
        row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id = ?", (ref,)).fetchone()
        if row is not None:
            return _record(row)
        rows = []
        if len(ref) >= 4:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                                (_escape_like(ref) + "%",)).fetchall()
        if not rows:  # a name: its active run (unique), else its only run; ended namesakes do not make it ambiguous
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE name = ? AND status IN {_ACTIVE_SQL}",
                                (ref,)).fetchall() or conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE name = ? ORDER BY created_at DESC LIMIT 2", (ref,),
            ).fetchall()
        if len(rows) == 1:
            return _record(rows[0])
        if len(rows) > 1:
            raise UsageError(f"{ref!r} matches several runs",
                             hint="use (more characters of) the run id; `runner list --all` shows them")
        raise NotFoundError(f"no run {ref!r}", hint="see `runner list --all`")

    def ended_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of `ids` are runs in a terminal state (unknown ids are not)."""
        wanted = sorted(set(ids))
        conn = self._connect()
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            found.update(row[0] for row in conn.execute(
                f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(chunk))}) AND status IN {_TERMINAL_SQL}",
                chunk))
        return found

    def has_name(self, name: str) -> bool:
        """Has any run (active or ended) had this name?"""
        return self._connect().execute("SELECT 1 FROM runs WHERE name = ? LIMIT 1", (name,)).fetchone() is not None

    def records(self, *, include_ended: bool, limit: int | None = None) -> list[RunRecord]:
        conn = self._connect()
        where = "" if include_ended else (
            f"WHERE status IN ({', '.join(repr(s) for s in ACTIVE_STATUSES)})")
        query = f"SELECT {', '.join(_COLUMNS)} FROM runs {where} ORDER BY created_at DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [_record(row) for row in conn.execute(query)]

    def active(self) -> list[RunRecord]:
        return self.records(include_ended=False)

    def integrity_check(self) -> str:
        return str(self._connect().execute("PRAGMA integrity_check").fetchone()[0])


def _enable_wal(conn: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode=WAL`, retried while the database is locked.

    When several processes open a new store at once, switching it to WAL can fail with SQLITE_BUSY
    at once: SQLite does not call the busy handler where waiting could deadlock. Once the file is in
    WAL mode (persistent) the pragma is a no-op, so only a store's first moments need the retries.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row(record: RunRecord) -> tuple[Any, ...]:
    values = []
    for column in _COLUMNS:
        value = getattr(record, column)
        if column in _JSON_COLUMNS:
            value = json.dumps(value)
        elif column == "stop_requested":
            value = int(value)
        values.append(value)
    return tuple(values)


def _record(row: tuple[Any, ...]) -> RunRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    for column in _JSON_COLUMNS:
        data[column] = json.loads(data[column])
    data["stop_requested"] = bool(data["stop_requested"])
    return RunRecord(**data)
