"""Reading a run's logs: live from the engine while the container exists, else from the run directory.

Live logs are copied straight through (no per-line work) unless the run has secrets, in which
case lines are masked as they pass. `follow` waits through `initializing` (VESSL's `logs -f`
gives up there) and ends when the run ends, after which the run is finalized.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from runner.backends.logstream import iter_lines, iter_payload
from runner.engine.context import Engine
from runner.engine.finalize import container_masker, log_path
from runner.store import RunRecord

TAIL_BLOCK = 64 * 1024
WAIT_POLL_S = 0.5


def tail_persisted(engine: Engine, run_id: str, lines: int | None) -> list[bytes]:
    path = log_path(engine, run_id)
    if not path.is_file():
        return []
    return list(_tail_file(path, lines))


def _tail_file(path: Path, lines: int | None) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        if lines is None:  # whole file: big blocks, not lines
            yield from iter(lambda: handle.read(TAIL_BLOCK * 16), b"")
            return
        size = handle.seek(0, os.SEEK_END)
        position, data = size, b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(TAIL_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
        kept = data.splitlines(keepends=True)
        yield from kept[-lines:] if lines else []


def stream_logs(engine: Engine, record: RunRecord, *, follow: bool, tail: int | None,
                timestamps: bool) -> Iterator[bytes]:
    """Chunks of log output for `record` (live if its container exists, else persisted)."""
    if follow and record.status in ("pending", "initializing"):
        record = _await_container(engine, record)
    backend = engine.backend() if not record.is_terminal else None
    state = backend.inspect(record.container_id or record.container_name) if backend else None
    if backend is None or state is None:
        yield from tail_persisted(engine, record.id, tail)
        return
    masker = container_masker(backend, state.id) if record.details.get("secret_env") else None
    chunks = iter_payload(backend.logs(state.id, follow=follow, tail=tail, timestamps=timestamps), follow=follow)
    if masker is None:
        yield from chunks
    else:
        for line in iter_lines(chunks):
            yield masker(line.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def _await_container(engine: Engine, record: RunRecord) -> RunRecord:
    store = engine.store()
    while record.status in ("pending", "initializing"):
        time.sleep(WAIT_POLL_S)
        record = store.get(record.id)
    return record
