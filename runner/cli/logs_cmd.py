"""`runner logs`: a run's output, live or after it ended (logs are kept when the container goes)."""

from __future__ import annotations

import sys
import time

import click

from runner.cli.render import EventPrinter
from runner.engine.context import Engine

STOP_SETTLE_S = 10.0


@click.command()
@click.argument("run")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the run ends (waits through initializing).")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N", help="Only the last N lines.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix engine timestamps (live runs only).")
def logs(run: str, follow: bool, tail: int | None, timestamps: bool) -> int:
    """Print a run's logs (stdout and stderr interleaved)."""
    from runner.engine.logs import stream_logs
    from runner.engine.reconcile import reconcile

    engine = Engine.from_env(EventPrinter(quiet=True))
    record = reconcile(engine, [engine.store().get(run)])[0]  # an ended run's logs are then kept, its container gone
    out = sys.stdout.buffer
    for chunk in stream_logs(engine, record, follow=follow, tail=tail, timestamps=timestamps):
        out.write(chunk)
        if follow:
            out.flush()
    out.flush()
    if follow:
        _await_stopped(engine, record.id)
        reconcile(engine, [engine.store().get(record.id)])  # the run ended: finish it now
    return 0


def _await_stopped(engine: Engine, run_id: str) -> None:
    """The stream ends when the container's output closes, a moment before the engine marks it
    exited; a reconcile in between would still see it running and leave the ended run unfinished."""
    record = engine.store().get(run_id)
    deadline = time.monotonic() + STOP_SETTLE_S
    while not record.is_terminal and time.monotonic() < deadline:
        state = engine.backend().inspect(record.container_id or record.container_name)
        if state is None or not state.running:
            return
        time.sleep(0.05)
