"""`runner artifact list|show|rm|import|export`: the local artifact store (model caches, run outputs).

NAME is the store name: `ORG/PROJECT/NAME` for `vessl-artifact://ORG/PROJECT/NAME`, `NAME` for
`artifact://NAME`; `--kind model|dataset` selects the `vessl-model://` and `vessl-dataset://`
namespaces. `NAME:N` names version N; without it, the latest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runner.cli.common import echo_json
from runner.cli.render import format_table
from runner.errors import NotFoundError, UsageError
from runner.home import RunnerHome
from runner.manifest.units import format_bytes

if TYPE_CHECKING:
    from runner.artifacts import ArtifactRef, ArtifactStore, VersionHandle

KINDS = ("artifact", "model", "dataset")
kind_option = click.option("--kind", type=click.Choice(KINDS), default="artifact", show_default=True,
                           help="Namespace: artifact (vessl-artifact://, artifact://), model, dataset.")


def _store(create: bool = False) -> ArtifactStore:
    from runner.artifacts import ArtifactStore

    home = RunnerHome.from_env()
    root = home.ensure_dir(home.artifacts_dir) if create else home.artifacts_dir
    return ArtifactStore(root)


def _ref(text: str, kind: str) -> ArtifactRef:
    from runner.artifacts import parse_store_name

    return parse_store_name(text, kind=kind)  # type: ignore[arg-type]


@click.group()
def artifact() -> None:
    """Manage local artifacts: immutable numbered versions, imported and exported by runs."""


@artifact.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_artifacts(as_json: bool) -> int:
    """List artifacts with their latest version and size."""
    store = _store()
    rows: list[dict[str, Any]] = []
    if store.root.is_dir():
        for ref in store.list_artifacts():
            latest = store.resolve(ref)
            totals = latest.manifest.totals if latest else None
            rows.append({"kind": ref.kind, "name": ref.name, "latest": latest.number if latest else None,
                         "versions": len(store.versions(ref.kind, ref.name)),
                         "files": totals.files if totals else 0, "bytes": totals.bytes if totals else 0,
                         "created": latest.manifest.created if latest else None})
    if as_json:
        echo_json(rows)
        return 0
    if not rows:
        click.echo("no artifacts; runs create them with `export:`, or seed one: runner artifact import DIR NAME")
        return 0
    table = [(r["kind"], r["name"], str(r["latest"] or "-"), str(r["versions"]), str(r["files"]),
              format_bytes(r["bytes"]), str(r["created"] or "-")) for r in rows]
    click.echo("\n".join(format_table(("KIND", "NAME", "LATEST", "VERSIONS", "FILES", "SIZE", "CREATED"), table)))
    return 0


@artifact.command("show")
@click.argument("name")
@kind_option
@click.option("--verify", is_flag=True, help="Re-hash every file against the content manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, kind: str, verify: bool, as_json: bool) -> int:
    """Show an artifact's versions (or one version: NAME:N) and check them."""
    store = _store()
    ref = _ref(name, kind)
    handles = [h for h in store.versions(ref.kind, ref.name) if ref.version in (None, h.number)]
    if not handles:
        raise NotFoundError(f"no {kind} {name!r}", hint="see `runner artifact list`")
    latest = store.resolve(ref.__class__(ref.kind, ref.name))
    versions = [_version_json(store, h, latest, verify) for h in handles]
    if as_json:
        echo_json({"kind": ref.kind, "name": ref.name, "latest": latest.number if latest else None,
                   "versions": versions})
        return 0 if all(not v["problems"] for v in versions) else 1
    click.echo(f"{ref.kind} {ref.name}  (latest: {latest.number if latest else '-'})")
    table = [(str(v["version"]) + (" *" if v["latest"] else ""), v["created"], str(v["files"]),
              format_bytes(v["bytes"]), v["source_run_id"] or "-",
              "ok" if not v["problems"] else f"{len(v['problems'])} problem(s)") for v in versions]
    click.echo("\n".join(format_table(("VERSION", "CREATED", "FILES", "SIZE", "FROM RUN", "CHECK"), table)))
    for v in versions:
        for problem in v["problems"][:20]:
            click.echo(f"  version {v['version']}: {problem}", err=True)
    return 0 if all(not v["problems"] for v in versions) else 1


def _version_json(store: ArtifactStore, handle: VersionHandle, latest: VersionHandle | None,
                  deep: bool) -> dict[str, Any]:
    manifest = handle.manifest
    totals = manifest.totals
    return {"version": handle.number, "latest": latest is not None and latest.number == handle.number,
            "created": manifest.created, "source_run_id": manifest.source_run_id, "files": totals.files,
            "symlinks": totals.symlinks, "bytes": totals.bytes, "path": str(handle.files_dir),
            "problems": store.verify(handle.ref, deep=deep)}


@artifact.command("rm")
@click.argument("name")
@kind_option
def remove(name: str, kind: str) -> int:
    """Remove an artifact, or one version of it (NAME:N). Refused while a live run imports it."""
    ref = _ref(name, kind)
    _refuse_if_in_use(ref)
    _store().remove(ref.kind, ref.name, ref.version)
    click.echo(f"removed {ref.kind} {ref.name}" + (f" version {ref.version}" if ref.version else ""))
    return 0


def _refuse_if_in_use(ref: ArtifactRef) -> None:
    """A live run's overlay reads the version directory: removing it would pull files from under it."""
    home = RunnerHome.from_env()
    if not home.db_path.exists():
        return
    from runner.store import RunStore

    for record in RunStore(home.db_path, create=False).active():
        for item in record.details.get("imported") or record.details.get("imports") or []:
            if item.get("artifact") != f"{ref.kind}:{ref.name}":
                continue
            if ref.version is None or item.get("version") == ref.version:
                raise UsageError(f"run {record.id} ({record.status}) is using {ref.kind} {ref.name}",
                                 hint=f"terminate it first: runner terminate {record.id}")


@artifact.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("name")
@kind_option
def import_dir(directory: Path, name: str, kind: str) -> int:
    """Seed NAME with a copy of a host DIRECTORY (e.g. an existing ~/.cache/huggingface) as a new version."""
    ref = _ref(name, kind)
    if ref.version is not None:
        raise UsageError("versions are numbered by the store", hint=f"use the name without ':{ref.version}'")
    with _progress("importing") as progress:
        published = _store(create=True).publish_copy(ref.kind, ref.name, directory, on_progress=progress)
    stats = published.stats
    click.echo(f"imported {directory} as {ref.kind} {ref.name} version {published.number} "
               f"({stats.entries} entries, {stats.hashed} files hashed)")
    return 0


@artifact.command("export")
@click.argument("name")
@click.argument("dest", type=click.Path(path_type=Path))
@kind_option
def export(name: str, dest: Path, kind: str) -> int:
    """Copy a version (NAME or NAME:N) to DEST, which must not exist or be empty. Links stay links."""
    handle = _store().export_to(_ref(name, kind), dest)
    click.echo(f"exported {kind} {handle.ref.name} version {handle.number} to {dest}")
    return 0


class _progress:
    """A rich progress bar on a terminal for (done, total) callbacks; silent otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _progress:
        import sys

        if sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
