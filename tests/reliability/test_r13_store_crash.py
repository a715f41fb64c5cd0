"""R13 — SIGKILL a process in the middle of 1,000 random `BEGIN IMMEDIATE` writes to the run store, 50 times.

Pass criterion (reliability.md R13): after each kill `PRAGMA integrity_check` is `ok` (50/50), no
NOT NULL/CHECK violation, and no partial run: every write that changes several columns (a terminal
status with its reason, exit code and finish time; `running` with its container and start time; a
two-row transaction) is found whole or not at all. The next process opens the store and writes
(no stale lock), as the next runner command would.

The victim (store_writer.py) goes through runner's own RunStore (WAL, synchronous=FULL, 30 s busy
timeout); a second process writes concurrently on every other round, so kills also land while the
victim waits for the lock. The store accumulates across rounds (~50,000 writes in total).
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from runner.store import ALL_STATUSES, RunStore

ROUNDS = 50
OPS = 1000
WRITER = Path(__file__).with_name("store_writer.py")


def _writer(db: Path, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WRITER), str(db), str(seed), str(OPS)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _invariants(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        problems = []
        check = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if check != ["ok"]:
            problems.append(f"integrity_check: {check[:3]}")
        rows = conn.execute("SELECT id, name, status, reason, exit_code, finished_at, container_id, started_at, "
                            "details FROM runs").fetchall()
        pairs: dict[str, set[str]] = {}
        for run_id, name, status, reason, exit_code, finished, container, started, details in rows:
            if status not in ALL_STATUSES or not name:
                problems.append(f"{run_id}: status {status!r} name {name!r}")
            json.loads(details)
            if run_id.startswith("pair-"):
                side, serial = run_id.split("-")[1:]
                pairs.setdefault(serial, set()).add(side)
                continue
            if status in ("completed", "failed", "terminated") and (
                    exit_code is None or finished is None or reason != f"{status} by writer {reason.split()[-1]}"):
                problems.append(f"{run_id}: torn terminal write: {status} {reason!r} {exit_code} {finished}")
            if status == "running" and (container is None or started is None):
                problems.append(f"{run_id}: torn running write: container {container} started {started}")
        problems += [f"pair {serial}: only {sides}" for serial, sides in pairs.items() if sides != {"a", "b"}]
        doubles = conn.execute("SELECT name FROM runs WHERE status IN ('pending','initializing','running','idle',"
                               "'stopping') GROUP BY name HAVING COUNT(*) > 1").fetchall()
        problems += [f"name {name} active twice" for (name,) in doubles]
        return problems
    finally:
        conn.close()


def test_sigkill_during_random_writes(tmp_path: Path, figures):
    db = tmp_path / "store" / "runner.db"
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    started = time.monotonic()
    calibration = _writer(db, seed)
    out, err = calibration.communicate(timeout=120)
    assert calibration.returncode == 0 and out.strip() == "done", err
    window = time.monotonic() - started
    problems: list[str] = []
    kills = survived = 0
    for round_ in range(ROUNDS):
        victim = _writer(db, seed + round_ + 1)
        rival = _writer(db, seed + 10_000 + round_) if round_ % 2 else None
        time.sleep(rng.uniform(0.05, window))  # the fault's random moment, not a wait for state
        victim.kill()
        victim.communicate(timeout=60)
        if rival is not None:
            _, rival_err = rival.communicate(timeout=120)
            assert rival.returncode == 0, f"the concurrent writer failed: {rival_err[-2000:]}"
        killed = victim.returncode == -9
        kills += killed
        found = [f"round {round_} (seed {seed}): {p}" for p in _invariants(db)]
        store = RunStore(db, create=False)  # the next runner command: opens, reads, writes
        try:
            store.active()
            assert store.integrity_check() == "ok"
            store.merge_json("no-such-run", "details", {"probe": round_})
        finally:
            store.close()
        survived += killed and not found
        problems += found
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        total = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    conn.close()
    figures.add("R13", faults_injected=kills, faults_survived=survived, rounds=ROUNDS, rows=total, seed=seed,
                window_s=round(window, 2))
    assert problems == [], "\n".join(problems[:20])
    assert kills >= ROUNDS * 0.8, f"only {kills} of {ROUNDS} writers were still running when killed"
