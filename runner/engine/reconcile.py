"""Reconcile: make run records agree with the engine before any command answers (reliability.md §2).

Level-triggered and idempotent: it acts on what it observes now, so a crashed command is just a
missed event. One `containers.list` per call. For each active record:
- pending/initializing, creator alive → leave it; creator dead → remove what it made, failed
  ("interrupted while creating");
- running/idle, container gone → failed ("container disappeared"); container ended → finalize;
  container running past its max_runtime (watchdog missing) → stop it; protected and done → idle;
- stopping, finalizer alive → leave it; finalizer dead → finish its work.
Containers in the listing whose run has already ended (a dead creator's in-flight create) are removed.
An unreachable engine raises EngineError; nothing is written then.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from runner.backends.base import ContainerSummary
from runner.backends.spec import LABEL_RUN_ID
from runner.engine.cleanup import remove_run_objects
from runner.engine.context import Engine
from runner.engine.finalize import finalize, finalizer_alive
from runner.entrypoint import read_state
from runner.store import RunRecord, process_alive


def reconcile(engine: Engine, records: Sequence[RunRecord]) -> list[RunRecord]:
    active = [record for record in records if not record.is_terminal]
    if not active:
        return list(records)
    store = engine.store()
    listing = engine.backend().list_managed(store.store_id)
    containers = {c.labels.get(LABEL_RUN_ID, ""): c for c in listing}
    reconciled = [record if record.is_terminal else reconcile_one(engine, record, containers.get(record.id))
                  for record in records]
    sweep_ended(engine, listing, exclude={record.id for record in active})
    return reconciled


def sweep_ended(engine: Engine, listing: Sequence[ContainerSummary], exclude: Collection[str] = ()) -> list[str]:
    """Remove containers (and volumes) whose run has already ended; returns those run ids.

    A terminal record never gets a container legitimately (finalizers remove it before the final state),
    but a create request still in flight when its process was killed can make one after a reconcile
    recorded that run as failed (Nomad's "dangling container"). No grace is needed: the run is over.
    """
    candidates = {c.labels.get(LABEL_RUN_ID, "") for c in listing} - set(exclude) - {""}
    if not candidates:
        return []
    store = engine.store()
    ended = sorted(store.ended_ids(candidates))
    for run_id in ended:
        remove_run_objects(engine.backend(), store.store_id, run_id)
    return ended


def reconcile_one(engine: Engine, record: RunRecord, container: ContainerSummary | None) -> RunRecord:
    if record.status in ("pending", "initializing"):
        return _creating(engine, record, container)
    if record.status == "stopping":
        return record if finalizer_alive(record) else finalize(engine, record, stop=record.stop_requested)
    if container is None or container.state in ("exited", "dead", "created"):
        return finalize(engine, record, stop=False)
    if record.deadline is not None and time.time() > record.deadline + 30 + float(record.details.get("grace_s", 10)):
        return finalize(engine, record, stop=True)  # the in-container watchdog should have acted
    if record.details.get("termination_protection") and record.status == "running":
        return _maybe_idle(engine, record, container)
    return record


def _creating(engine: Engine, record: RunRecord, container: ContainerSummary | None) -> RunRecord:
    if process_alive(record.owner_pid, record.owner_boot_id):
        return record
    # The record may be stale: its creator can have marked it running and exited since it was read. So the
    # guarded state change comes first and is the claim; only the reconciler that made it removes anything.
    # (A crash in between leaves a failed run's container: an orphan that `gc` collects.)
    store = engine.store(create=True)
    reason = "interrupted while creating (the creating process ended)"
    status = "terminated" if record.stop_requested else "failed"
    updated = store.update(record.id, expect=("pending", "initializing"), status=status, reason=reason,
                           finished_at=time.time())
    if updated is None:
        return store.get(record.id)
    remove_run_objects(engine.backend(), store.store_id, record.id)  # by label: also what the listing missed
    return updated


def _maybe_idle(engine: Engine, record: RunRecord, container: ContainerSummary) -> RunRecord:
    if read_state(engine.home.run_dir(record.id)).get("phase") != "idle":
        return record
    updated = engine.store(create=True).update(record.id, expect=("running",), status="idle")
    return updated or record


def reconcile_all(engine: Engine, *, include_ended: bool, limit: int | None = None) -> list[RunRecord]:
    """The records a listing shows, reconciled. Terminal records need no engine call."""
    store = engine.store()
    records = store.records(include_ended=include_ended, limit=limit)
    return reconcile(engine, records)
