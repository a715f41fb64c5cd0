"""Ending a run: the one resumable finalizer behind `terminate`, a run that exits on its own, and crash recovery.

Steps, each safe to repeat after a crash (the run stays `stopping` until the last one):
claim (status `stopping`, owner = this process) → stop if asked (SIGTERM, grace, SIGKILL) →
read and persist the exit state → persist the logs (secrets masked) → export declared paths as
new artifact versions (results persisted) → remove the container and the run's volumes → the
terminal status with its reason. What is persisted before the container goes is what a resumed
finalizer uses once the container is gone. One finalizer per run at a time: a per-run flock, which
the kernel releases if its holder dies, so racing `list`s never export or remove twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.backends.base import ContainerState
from runner.backends.docker import DockerBackend
from runner.backends.logstream import iter_lines, iter_payload
from runner.engine.cleanup import remove_run_objects
from runner.engine.context import Engine
from runner.engine.events import Notice
from runner.engine.outcome import Outcome, classify
from runner.entrypoint import RUNNER_DIR_NAME, SECRETS_DIR, read_state
from runner.errors import EngineError, RunnerError
from runner.faults import checkpoint
from runner.manifest.secretbag import Masker
from runner.store import ACTIVE_STATUSES, RunRecord, owner_token, process_alive

LOG_FILE = "container.log"
LOCK_FILE = "finalize.lock"
FINALIZER_WAIT_S = 300.0  # a stop waits this long for a concurrent finalizer (exports of large caches)


def log_path(engine: Engine, run_id: str) -> Path:
    return engine.home.run_dir(run_id) / "logs" / LOG_FILE


def finalize(engine: Engine, record: RunRecord, *, stop: bool, grace_s: float | None = None) -> RunRecord:
    """Finish the run. A stop waits for a concurrent finalizer; a reconcile leaves the run to it."""
    with _finalizer_lock(engine, record.id, wait=stop) as held:
        if not held:
            return engine.store().get(record.id)  # another process is finishing it right now
        return _finalize(engine, record, stop=stop, grace_s=grace_s)


@contextmanager
def _finalizer_lock(engine: Engine, run_id: str, *, wait: bool) -> Iterator[bool]:
    run_dir = engine.home.run_dir(run_id)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        yield _acquire(fd, FINALIZER_WAIT_S if wait else 0.0)
    finally:
        os.close(fd)


def _acquire(fd: int, wait_s: float) -> bool:
    """The lock within `wait_s` (polled, so a stuck finalizer cannot hang `terminate` forever)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _finalize(engine: Engine, record: RunRecord, *, stop: bool, grace_s: float | None) -> RunRecord:
    store = engine.store(create=True)
    claimed = store.update(record.id, expect=ACTIVE_STATUSES, status="stopping", owner_pid=os.getpid(),
                           owner_boot_id=owner_token(), stop_requested=record.stop_requested or stop)
    if claimed is None:
        return store.get(record.id)  # someone else finished it
    if stop:
        checkpoint("terminate_after_mark")
    engine.events(Notice(f"stopping run {record.id}" if stop else f"run {record.id} ended; finishing up"))
    backend = engine.backend()
    state = backend.inspect(record.container_id or record.container_name)
    if state is not None and state.running:
        grace = grace_s if grace_s is not None else float(claimed.details.get("grace_s", 10))
        backend.stop(state.id, grace)
        checkpoint("terminate_after_stop")
        state = backend.inspect(state.id)
    outcome = _outcome(engine.home.run_dir(record.id), claimed, state)
    if state is not None:
        # Before anything can remove the container: a finalizer resumed after that needs the outcome.
        store.merge_json(record.id, "details", {"outcome": {
            "status": outcome.status, "reason": outcome.reason, "exit_code": outcome.exit_code,
            "warning": outcome.warning}})
        _persist_logs(engine, backend, claimed, state)
        checkpoint("terminate_after_logs")
    exports = _export(engine, claimed, ran=state is not None and state.started_at is not None)
    remove_run_objects(backend, store.store_id, record.id)
    checkpoint("terminate_after_remove")
    _tidy_run_dir(engine, record.id)
    return _record_outcome(engine, claimed, outcome, exports, state)


def _outcome(run_dir: Path, record: RunRecord, state: ContainerState | None) -> Outcome:
    saved = record.details.get("outcome")
    if state is None and saved:  # an earlier finalizer read it, then died after removing the container
        return Outcome(saved["status"], saved["reason"], saved["exit_code"], saved.get("warning"))
    if state is None:
        if record.stop_requested:
            return Outcome("terminated", "terminated by user", record.exit_code)
        return Outcome("failed", "container disappeared", None)
    return classify(state, stop_requested=record.stop_requested, deadline=record.deadline,
                    failed_step=_failure_context(run_dir, record, state))


def _failure_context(run_dir: Path, record: RunRecord, state: ContainerState) -> str | None:
    """Where a failed run failed: `step 2/3`, or that the entrypoint never ran (no shell in the image)."""
    if not state.exit_code or record.stop_requested:
        return None
    fields = read_state(run_dir)
    if not fields:  # the entrypoint writes its state before the first step
        if state.exit_code in (126, 127):  # what tini (or the engine) returns when /bin/sh cannot be run
            return "the image has no usable /bin/sh: the run's entrypoint never started"
        return None
    step = fields.get("step", "0")
    steps = record.details.get("steps") or []
    if not step.isdigit() or int(step) == 0:
        return None
    total = sum(1 for item in steps if "command" in item or "wait" in item)
    return f"step {step}/{total}" if total else f"step {step}"


def _persist_logs(engine: Engine, backend: DockerBackend, record: RunRecord, state: ContainerState) -> None:
    """Copy the engine's log into the run directory, secrets masked, before the container goes."""
    path = log_path(engine, record.id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    masker = container_masker(backend, state.id) if record.details.get("secret_env") else None
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        chunks = iter_payload(backend.logs(state.id, follow=False), follow=False)
        if masker is None:
            for chunk in chunks:
                handle.write(chunk)
        else:
            for line in iter_lines(chunks):
                handle.write(masker(line.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def container_masker(backend: DockerBackend, container_id: str) -> Masker | None:
    files = backend.read_dir_files(container_id, SECRETS_DIR)
    values = [content.decode("utf-8", "replace") for content in files.values()]
    return Masker(values) if values else None


def _export(engine: Engine, record: RunRecord, *, ran: bool) -> list[dict[str, Any]]:
    done = record.details.get("exports_done")
    if done is not None:  # an earlier finalizer published them, then died: never publish twice
        return list(done)
    exports = record.details.get("export_views") or []
    if not exports or not ran:
        return []
    from runner.engine.exports import publish_exports

    results = publish_exports(engine, record, exports)
    engine.store(create=True).merge_json(record.id, "details", {"exports_done": results})
    return results


def _tidy_run_dir(engine: Engine, run_id: str) -> None:
    """Drop the run's scratch (checkouts, overlay dirs); keep plan, manifest and logs."""
    run_dir = engine.home.run_dir(run_id)
    for name in ("imports", "volumes", RUNNER_DIR_NAME):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _record_outcome(engine: Engine, record: RunRecord, outcome: Outcome, exports: list[dict[str, Any]],
                    state: ContainerState | None) -> RunRecord:
    store = engine.store(create=True)
    status, reason = outcome.status, outcome.reason
    failed_exports = [e for e in exports if e.get("error")]
    if failed_exports:
        detail = "; ".join(f"{e['target']}: {e['error']}" for e in failed_exports)
        reason = f"{reason}; export failed: {detail}"
        status = "failed" if status == "completed" else status
    if outcome.warning:
        engine.events(Notice(outcome.warning, "warning"))
    store.merge_json(record.id, "details", {"exports_done": exports, "warning": outcome.warning})
    finished = (state.finished_at if state else None) or time.time()
    updated = store.update(record.id, expect=("stopping",), status=status, reason=reason,
                           exit_code=outcome.exit_code, finished_at=finished)
    return updated or store.get(record.id)


def finalizer_alive(record: RunRecord) -> bool:
    return process_alive(record.owner_pid, record.owner_boot_id)


def safe_finalize(engine: Engine, record: RunRecord, *, stop: bool) -> RunRecord:
    """Finalize, but let an engine outage leave the run for a later reconcile instead of failing the command."""
    try:
        return finalize(engine, record, stop=stop)
    except EngineError:
        raise
    except RunnerError as exc:
        engine.events(Notice(f"could not finish run {record.id}: {exc.message}", "warning"))
        return engine.store().get(record.id)
