"""A process that hammers the run store with random `BEGIN IMMEDIATE` writes (R13's victim).

`python store_writer.py DB SEED OPS` performs OPS random writes through `runner.store.RunStore`, the way
runner's commands do (insert_intent, update with a status guard, merge_json, delete), plus a raw
two-row transaction on the store's own connection, and prints "done" at the end. The test SIGKILLs it
at a random moment. Every write that changes several columns changes them in one statement or one
transaction, so a torn write shows up as a broken invariant (see test_r13_store_crash.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from pathlib import Path

from runner.store import NameConflictError, RunRecord, RunStore

NAMES = [f"run-{n}" for n in range(40)]
HASHES = ["a" * 64, "b" * 64]


def _random_active(store: RunStore, rng: random.Random) -> RunRecord | None:
    active = store.active()
    return rng.choice(active) if active else None


def one_write(store: RunStore, rng: random.Random, serial: int) -> None:
    op = rng.randrange(7)
    now = time.time()
    target = _random_active(store, rng) if op not in (0, 6) else None
    if target is None and op not in (0, 6):
        op = 0  # nothing to change: make a run instead, so every turn writes
    if op == 0:
        record = RunRecord(id=f"{serial:x}", name=rng.choice(NAMES), status="pending",
                           spec_hash=rng.choice(HASHES), created_at=now, updated_at=now, owner_pid=1,
                           details={"serial": serial, "pad": "x" * rng.randrange(2000)})
        with contextlib.suppress(NameConflictError):  # same name, other spec: refused, as runner does
            store.insert_intent(record)
        return
    if op == 6:  # two rows in one transaction: both or neither, whatever the kill hits
        with store._write() as conn:
            for side in ("a", "b"):
                conn.execute("INSERT INTO runs (id, name, status, reason, spec_hash, created_at, updated_at, "
                             "finished_at) VALUES (?, ?, 'completed', 'pair', ?, ?, ?, ?)",
                             (f"pair-{side}-{serial}", f"pair-{side}-{serial}", HASHES[0], now, now, now))
        return
    assert target is not None
    if op == 1:
        store.update(target.id, status="initializing" if target.status == "pending" else target.status)
    elif op == 2:
        store.update(target.id, status="running", container_id=f"c{serial}", started_at=now)
    elif op == 3:
        status = rng.choice(("completed", "failed", "terminated"))
        store.update(target.id, status=status, reason=f"{status} by writer {serial}", exit_code=rng.randrange(256),
                     finished_at=now)
    elif op == 4:
        store.merge_json(target.id, "details", {f"k{serial % 50}": "v" * rng.randrange(500)})
    elif op == 5 and rng.random() < 0.3:
        store.delete(target.id)
    elif op == 5:
        store.update(target.id, owner_pid=serial, stop_requested=serial % 2)


def main(db: str, seed: int, ops: int) -> None:
    store = RunStore(Path(db), create=True)
    rng = random.Random(seed)
    start = os.getpid() * 10 * ops  # serials unique across concurrent writers and rounds (pids differ)
    for serial in range(start, start + ops):
        one_write(store, rng, serial)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
