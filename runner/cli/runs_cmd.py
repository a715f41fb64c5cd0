"""`runner list`, `describe`, `terminate`, `gc`: every answer reconciled with the engine first."""

from __future__ import annotations

from typing import Any

import click

from runner.cli.common import echo_json
from runner.cli.render import EventPrinter, format_seconds, format_table, format_time
from runner.cli.runview import run_json
from runner.engine.context import Engine
from runner.store import RunRecord

RECENT_ENDED = 10
STATUS_REASON_CHARS = 40
PHASE_ORDER = ("image", "imports", "start", "ready", "export")


def _engine(quiet: bool = True) -> Engine:
    return Engine.from_env(EventPrinter(quiet=quiet))


@click.command("list")
@click.option("--all", "show_all", is_flag=True, help="Show every run ever made (default: active runs "
              f"and the {RECENT_ENDED} most recent ended ones).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_runs(show_all: bool, as_json: bool) -> int:
    """List runs: ID, NAME, STATUS, CREATED, ENDPOINTS."""
    engine = _engine()
    if not engine.home.db_path.exists():
        records: list[RunRecord] = []
    else:
        from runner.engine.reconcile import reconcile

        store = engine.store()
        active = reconcile(engine, store.active())
        ended = store.records(include_ended=True, limit=None if show_all else len(active) + RECENT_ENDED)
        shown = {r.id for r in active}
        records = active + [r for r in ended if r.id not in shown and r.is_terminal]
        records.sort(key=lambda r: r.created_at, reverse=True)
    if as_json:
        echo_json([run_json(r) for r in records])
        return 0
    if not records:
        click.echo("no runs; create one with: runner create -f MANIFEST")
        return 0
    rows = [(r.id, r.name, _status(r), format_time(r.created_at), _endpoints(r)) for r in records]
    click.echo("\n".join(format_table(("ID", "NAME", "STATUS", "CREATED", "ENDPOINTS"), rows)))
    return 0


def _status(record: RunRecord) -> str:
    """`failed (GPU unavailable)`, `failed (exit code 3 (step 2/2))`: the reason, short, for failed runs.

    A long reason is cut at its first clause (before `:` or ` (`), else at the limit with an ellipsis,
    never in the middle of a parenthesis."""
    if record.status == "failed" and record.reason:
        reason = record.reason
        if len(reason) > STATUS_REASON_CHARS:
            reason = reason.split(":")[0].split(" (")[0]
        if len(reason) > STATUS_REASON_CHARS:
            reason = reason[: STATUS_REASON_CHARS - 1].rstrip() + "…"
        return f"failed ({reason})"
    return record.status


def _endpoints(record: RunRecord) -> str:
    if record.is_terminal:
        return "-"
    return " ".join(f"{e['name']}={e['url']}" for e in record.endpoints if e.get("url")) or "-"


@click.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe(run: str, as_json: bool) -> int:
    """Show one run: status and reason, exit code, phases, image, resources, endpoints, env, imports, exports."""
    from runner.engine.reconcile import reconcile

    engine = _engine()
    record = reconcile(engine, [engine.store().get(run)])[0]
    if as_json:
        echo_json(describe_json(record))
        return 0
    for label, value in describe_rows(record):
        click.echo(f"{label:<13} {value}")
    return 0


def describe_json(record: RunRecord) -> dict[str, Any]:
    details = record.details
    return {
        **run_json(record),
        "description": record.description,
        "image": record.image,
        "manifest": record.manifest_path,
        "started": record.started_at,
        "ready_at": record.ready_at,
        "finished": record.finished_at,
        "phases": {name: round(p["end"] - p["start"], 3) for name, p in record.phases.items()},
        "resources": details.get("resources"),
        "env": details.get("env"),
        "steps": details.get("steps"),
        "imports": details.get("imported") or details.get("imports"),
        "exports": details.get("exports_done") or details.get("exports"),
        "max_runtime_s": details.get("max_runtime_s"),
        "warning": details.get("warning"),
        "endpoints_detail": record.endpoints,
    }


def describe_rows(record: RunRecord) -> list[tuple[str, str]]:
    details = record.details
    status = record.status + (f" ({record.reason})" if record.reason else "")
    rows = [("ID", record.id), ("Name", record.name), ("Type", record.run_type), ("Status", status),
            ("Exit code", "-" if record.exit_code is None else str(record.exit_code)),
            ("Created", format_time(record.created_at)), ("Started", format_time(record.started_at)),
            ("Ready", format_time(record.ready_at)), ("Finished", format_time(record.finished_at)),
            ("Phases", _phases(record)), ("Image", record.image), ("Resources", _resources(details))]
    rows += [("Endpoint", f"{e['name']}: {e.get('url') or '(not published)'}"
              + (" ready" if e.get("ready") else "")) for e in record.endpoints]
    rows += [("Env", f"{k}={v}") for k, v in (details.get("env") or {}).items()
             if not k.startswith(("RUNNER_", "TINI_"))]
    rows += [("Import", _import(item)) for item in details.get("imported") or details.get("imports") or []]
    rows += [("Export", _export(item)) for item in details.get("exports_done") or details.get("exports") or []]
    if details.get("exports"):
        rows.append(("", "exports run when the run ends: completed, failed or terminated"))
    if details.get("warning"):
        rows.append(("Warning", str(details["warning"])))
    rows.append(("Logs", f"runner logs {record.id}"))
    return rows


def _phases(record: RunRecord) -> str:
    phases = sorted(record.phases.items(), key=lambda item: PHASE_ORDER.index(item[0])
                    if item[0] in PHASE_ORDER else len(PHASE_ORDER))
    return " · ".join(f"{name} {format_seconds(p['end'] - p['start'])}" for name, p in phases) or "-"


def _resources(details: dict[str, Any]) -> str:
    res = details.get("resources") or {}
    parts = [f"{res['cpus']:g} CPUs" if res.get("cpus") else "no CPU limit",
             f"{res['memory']} memory" if res.get("memory") else "no memory limit",
             f"{res.get('gpus') or 0} GPU(s)"]
    return ", ".join(parts)


def _import(item: dict[str, Any]) -> str:
    if "git" in item:
        commit = f" (commit {item['commit'][:12]})" if item.get("commit") else ""
        return f"{item['target']} ← git {item['git']} @ {item.get('ref') or 'default branch'}{commit}"
    if "artifact" in item:
        return f"{item['target']} ← {item['artifact']} version {item.get('version') or '(none: started empty)'}"
    return f"{item.get('target')} ← {item.get('huggingface', '?')} {item.get('revision') or ''}".rstrip()


def _export(item: dict[str, Any]) -> str:
    if item.get("error"):
        return f"{item['target']} → {item['artifact']}: FAILED ({item['error']})"
    version = f" version {item['version']}" if item.get("version") else " (when the run ends)"
    return f"{item['target']} → {item['artifact']}{version}"


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--grace", type=float, default=None, metavar="S",
              help="Seconds between SIGTERM and SIGKILL (default: the run's, 10).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def terminate(runs: tuple[str, ...], grace: float | None, as_json: bool) -> int:
    """Stop runs: SIGTERM, wait --grace, SIGKILL; then export and clean up. Safe to repeat."""
    from runner.engine.terminate import terminate as engine_terminate

    engine = _engine(quiet=as_json)
    results = []
    for ref in runs:
        record = engine_terminate(engine, ref, grace)
        results.append(record)
        if not as_json:
            click.echo(f"run {record.id} ({record.name}): {record.status}"
                       + (f" — {record.reason}" if record.reason else "")
                       + (f", exit code {record.exit_code}"
                          if record.exit_code is not None and "exit code" not in (record.reason or "") else ""))
    if as_json:
        echo_json([run_json(r) for r in results])
    return 0


@click.command()
@click.option("--grace", type=float, default=60.0, show_default=True, metavar="S",
              help="Leave objects younger than this alone (a create may be in progress).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gc(grace: float, dry_run: bool, as_json: bool) -> int:
    """Remove containers, volumes, run directories and staging dirs that belong to no live run."""
    from runner.engine.gc import collect

    report = collect(_engine(), grace_s=grace, dry_run=dry_run)
    if as_json:
        echo_json({"dry_run": dry_run, "containers": report.containers, "volumes": report.volumes,
                   "run_dirs": report.run_dirs, "staging_removed": report.staging, "images_removed": report.images})
        return 0
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb}: {len(report.containers)} container(s), {len(report.volumes)} volume(s), "
               f"{len(report.run_dirs)} run dir(s), {report.staging} staging dir(s), {report.images} stale image(s)")
    for name in report.containers + report.volumes:
        click.echo(f"  {name}")
    return 0
