"""`runner create` (not --dry-run): create the run, optionally wait for readiness, print endpoints.

Signals in the foreground: the first SIGINT, SIGTERM or SIGHUP (a closed terminal) stops the run this
command started gracefully (it ends `terminated` with its exit code) and the command exits 128+signal
(130, 143, 129); a second one kills the container at once. One that arrives while the run is still being
created ends it `terminated` ("interrupted while creating") and removes what it had made (engine
requests that make objects hold the signal until they return: runner/interrupts.py). Without --wait,
create returns as soon as the container runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from runner.cli.common import echo_json
from runner.cli.render import EventPrinter
from runner.cli.runview import run_json
from runner.engine.context import Engine
from runner.errors import ExitCode
from runner.interrupts import Signalled, foreground, handling
from runner.manifest.pipeline import ManifestRequest, load_manifest
from runner.manifest.problems import format_problem
from runner.plan.build import RunFlags
from runner.store import RunRecord

LAST_LOG_LINES = 20


def create_run(request: ManifestRequest, flags: RunFlags, *, wait: bool, timeout: float | None,
               as_json: bool) -> int:
    from runner.engine.create import create_run as engine_create

    engine = Engine.from_env(EventPrinter(quiet=as_json))
    loaded = load_manifest(request)
    for warning in loaded.warnings:
        click.echo(format_problem(loaded.source, warning), err=True)
    _settle_same_name(engine, flags.run_name or loaded.manifest.name)
    with foreground():
        try:
            result = engine_create(engine, loaded, flags)
            record = result.record
            if result.adopted:
                click.echo(f"a run named {record.name!r} with the same manifest is already {record.status}: "
                           f"{record.id}", err=True)
            ready = None
            if wait and record.status in ("running", "idle"):
                ready = _wait(engine, record, timeout)
                record = ready.record
        except KeyboardInterrupt as interrupt:  # Signalled: SIGINT, SIGTERM or SIGHUP
            return _interrupted(engine, interrupt, flags.grace_s)
    return _report(engine, record, as_json=as_json, waited=wait, ready=ready)


def _settle_same_name(engine: Engine, name: str) -> None:
    """An "active" run with this name may have ended unobserved: reconcile it first, so create neither
    adopts a finished run nor refuses the name because of one. A name used before may also have left a
    container behind (a create killed while its request was in flight): sweep it, so a re-create ends
    with exactly one container."""
    from runner.engine.reconcile import reconcile, sweep_ended

    if not engine.home.db_path.exists():
        return
    store = engine.store()
    same = [record for record in store.active() if record.name == name]
    if same:
        reconcile(engine, same)
    elif store.has_name(name):
        sweep_ended(engine, engine.backend().list_managed(store.store_id))


def _wait(engine: Engine, record: RunRecord, timeout: float | None) -> Any:
    from runner.engine.readiness import wait_ready

    return wait_ready(engine, record, timeout)


def _interrupted(engine: Engine, interrupt: BaseException, grace_s: float) -> int:
    """Stop the run this command started, gracefully; a second signal kills it."""
    from runner.engine.terminate import terminate

    code = 128 + interrupt.signum if isinstance(interrupt, Signalled) else ExitCode.INTERRUPTED
    store = engine.store()
    mine = [r for r in store.active() if r.owner_pid is not None and _is_me(r)]
    for record in mine:
        click.echo(f"stopping run {record.id} (again to kill it now)", err=True)
        with _second_signal_kills(engine, record):
            final = terminate(engine, record.id, grace_s)
        click.echo(f"run {final.id} {final.status}: {final.reason}", err=True)
    return int(code)


def _is_me(record: RunRecord) -> bool:
    return record.owner_pid == os.getpid()


@contextmanager
def _second_signal_kills(engine: Engine, record: RunRecord) -> Iterator[None]:
    def kill_now(signum: int, frame: object) -> None:
        engine.backend().kill(record.container_id or record.container_name)

    with handling(kill_now):
        yield


def _report(engine: Engine, record: RunRecord, *, as_json: bool, waited: bool, ready: Any) -> int:
    ended = record.is_terminal
    failed = ended and record.status != "completed"
    if as_json:
        echo_json(run_json(record))
        return int(ExitCode.RUN_FAILED) if failed or (ready is not None and ready.timed_out) else 0
    click.echo(f"run {record.id} ({record.name}): {record.status}" + (f" — {record.reason}" if record.reason else ""))
    for endpoint in record.endpoints:
        state = " (ready)" if endpoint.get("ready") else ""
        click.echo(f"  {endpoint['name']:<12} {endpoint.get('url') or '(not published)'}{state}")
    if failed:
        _print_last_logs(engine, record)
        return int(ExitCode.RUN_FAILED)
    if not ended:
        click.echo(f"  logs: runner logs {record.id} -f    stop: runner terminate {record.id}")
    if ready is not None and ready.timed_out:
        return int(ExitCode.RUN_FAILED)
    return 0


def _print_last_logs(engine: Engine, record: RunRecord) -> None:
    from runner.engine.logs import tail_persisted

    lines = tail_persisted(engine, record.id, LAST_LOG_LINES)
    if lines:
        click.echo(f"last {len(lines)} log lines:", err=True)
        for line in lines:
            click.echo("  " + line.decode("utf-8", "replace").rstrip("\n"), err=True)
