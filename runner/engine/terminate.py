"""`terminate`: persist the request first, then stop gracefully and finalize. Idempotent and resumable.

A run still being created is stopped by its creator, which checks the request between phases;
if the creator is gone, the request is carried out here.
"""

from __future__ import annotations

import time

from runner.engine.context import Engine
from runner.engine.finalize import finalize
from runner.engine.reconcile import reconcile
from runner.store import RunRecord, process_alive

CREATOR_WAIT_S = 60.0


def terminate(engine: Engine, ref: str, grace_s: float | None) -> RunRecord:
    store = engine.store(create=True)
    record = store.get(ref)
    if record.is_terminal:
        return record
    # Engine first: a container that ended or vanished on its own is reported as what happened, not as
    # "terminated by user", and an unreachable engine fails here, before anything is written.
    record = reconcile(engine, [record])[0]
    if record.is_terminal:
        return record
    marked = store.update(record.id, stop_requested=1)
    if marked is None:
        return store.get(record.id)
    if marked.status in ("pending", "initializing") and process_alive(marked.owner_pid, marked.owner_boot_id):
        return _await_creator(engine, marked)
    if marked.status in ("pending", "initializing"):
        return reconcile(engine, [marked])[0]
    return finalize(engine, marked, stop=True, grace_s=grace_s)


def _await_creator(engine: Engine, record: RunRecord) -> RunRecord:
    """The creating process sees the request at its next phase boundary and ends the run itself."""
    store = engine.store()
    deadline = time.monotonic() + CREATOR_WAIT_S
    while time.monotonic() < deadline:
        current = store.get(record.id)
        if current.is_terminal:
            return current
        if current.status not in ("pending", "initializing"):
            return finalize(engine, current, stop=True)
        time.sleep(0.2)
    return store.get(record.id)
