"""`gc`: remove what belongs to this store but to no live run, after a grace period.

Only objects labelled with *this* store's id are considered (two runner homes on one host never
collect each other's); those of no known run only when older than the grace, so a create in progress is
safe; those of an ended run at once (a dead creator's in-flight create can leave one).
Containers and volumes of ended or unknown runs, run directories of deleted records, stale artifact
staging directories and untagged images that rebuilds of `image.build` left behind go; `dry_run` only
reports.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

from runner.backends.spec import LABEL_RUN_ID, LABEL_STORE
from runner.builds import BUILD_HASH_LABEL
from runner.engine.context import Engine
from runner.engine.reconcile import reconcile

DEFAULT_GRACE_S = 60.0


@dataclass
class GcReport:
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    staging: int = 0
    images: int = 0  # untagged images left behind by rebuilds of `image.build`


def collect(engine: Engine, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False) -> GcReport:
    report = GcReport()
    if not engine.home.db_path.exists():
        return report
    store = engine.store(create=not dry_run)
    reconcile(engine, store.active()) if not dry_run else None
    # `known` before `live`: a run recorded in between is in neither, so its container gets the grace;
    # one in `known` but not `live` has ended (records only move from active to ended): no grace.
    known = {record.id for record in store.records(include_ended=True)}
    live = {record.id for record in store.active()}
    ended = known - live
    backend = engine.backend()
    now = time.time()
    for container in backend.list_managed(store.store_id):
        run_id = container.labels.get(LABEL_RUN_ID, "")
        if run_id not in live and (run_id in ended or now - container.created > grace_s):
            report.containers.append(container.name)
            if not dry_run:
                backend.remove_container(container.id)
    for volume in backend.list_volumes([f"{LABEL_STORE}={store.store_id}"]):
        run_id = (volume.get("Labels") or {}).get(LABEL_RUN_ID, "")
        if run_id not in live:
            report.volumes.append(str(volume.get("Name")))
            if not dry_run:
                backend.remove_volume(str(volume.get("Name")))
    _run_dirs(engine, known, live, report, dry_run)
    report.staging = _staging(engine, grace_s, dry_run)
    if not dry_run:
        report.images = backend.prune_dangling_images([BUILD_HASH_LABEL])
    return report


def _run_dirs(engine: Engine, known: set[str], live: set[str], report: GcReport, dry_run: bool) -> None:
    runs_dir = engine.home.runs_dir
    if not runs_dir.is_dir():
        return
    for run_dir in runs_dir.iterdir():
        if run_dir.name not in known:
            report.run_dirs.append(run_dir.name)
            if not dry_run:
                shutil.rmtree(run_dir, ignore_errors=True)
        elif run_dir.name not in live and not dry_run:
            for scratch in ("imports", "volumes"):
                shutil.rmtree(run_dir / scratch, ignore_errors=True)


def _staging(engine: Engine, grace_s: float, dry_run: bool) -> int:
    if dry_run or not engine.home.artifacts_dir.is_dir():
        return 0
    from runner.artifacts import ArtifactStore

    return ArtifactStore(engine.home.artifacts_dir).gc_staging(grace_s)
