"""Publishing a new version atomically (reliability §4).

    .staging/<uuid>/files   built by staging.build_files (validated, fsynced)
    .staging/<uuid>/MANIFEST.json   written last, fsynced; then fsync(.staging/<uuid>)
    rename(.staging/<uuid>, versions/<n>)   n = highest present + 1; on EEXIST/ENOTEMPTY the
                                            manifest is rewritten for n+1 and the rename retried,
                                            so concurrent exporters end up as distinct versions
    fsync(versions/)
    LATEST forward (latest.advance_latest)

A crash anywhere leaves LATEST absent or naming a complete version; leftovers are only private
staging dirs and LATEST.tmp files, which gc_staging removes. While a publish is live its staging
dir is flock-held, so a concurrent gc never deletes it whatever the grace.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from runner import faults
from runner.artifacts.contents import ContentManifest, Entry, FileHasher
from runner.artifacts.disk import force_rmtree, fsync_dir, replace_durably, write_durably
from runner.artifacts.latest import advance_latest
from runner.artifacts.layout import MANIFEST_NAME, PRIVATE_DIR_MODE, ArtifactLayout
from runner.artifacts.staging import BuildStats, PlannedEntry, ProgressFn, build_files, validate_plan
from runner.artifacts.versions import VersionHandle, handle

_TAKEN = frozenset({errno.EEXIST, errno.ENOTEMPTY})
MAX_ALLOCATION_ATTEMPTS = 10_000


@dataclass(frozen=True)
class PublishRequest:
    """What to publish where: the plan, the destination and the run it came from."""

    layout: ArtifactLayout
    plan: list[PlannedEntry]
    run_id: str | None
    hasher: FileHasher
    on_progress: ProgressFn | None = None


@dataclass(frozen=True)
class PublishedVersion:
    """A version that is now complete under versions/; `latest_moved` is False if a newer one won."""

    version: VersionHandle
    stats: BuildStats
    latest_moved: bool

    @property
    def number(self) -> int:
        return self.version.number


def publish(request: PublishRequest) -> PublishedVersion:
    layout = request.layout
    validate_plan(request.plan)  # before anything exists on disk: a refused tree leaves no trace
    with staging_area(layout) as staging:
        entries, stats = build_files(request.plan, staging / "files", request.hasher, request.on_progress)
        number = _commit(layout, staging, entries, request.run_id)
    moved = advance_latest(layout, number)
    return PublishedVersion(handle(layout, number), stats, moved)


@contextlib.contextmanager
def staging_area(layout: ArtifactLayout) -> Iterator[Path]:
    """A fresh private `.staging/<uuid>`, flock-held while in use and removed unless renamed away."""
    layout.ensure()
    path = layout.staging_dir / uuid.uuid4().hex
    path.mkdir(mode=PRIVATE_DIR_MODE)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    except BaseException:
        if path.exists():
            force_rmtree(path)
        raise
    finally:
        os.close(fd)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _commit(layout: ArtifactLayout, staging: Path, entries: dict[str, Entry], run_id: str | None) -> int:
    """Write the manifest last, then rename staging onto the first free version number."""
    number = max(layout.version_numbers(), default=0) + 1
    manifest = ContentManifest(layout.kind, layout.name, number, _utc_now(), run_id, entries)
    write_durably(staging / MANIFEST_NAME, manifest.to_bytes())
    fsync_dir(staging)
    faults.checkpoint("after_stage_fsync")
    number = rename_into_place(layout, staging, manifest)
    fsync_dir(layout.versions_dir)
    faults.checkpoint("after_version_rename")
    return number


def rename_into_place(layout: ArtifactLayout, staging: Path, manifest: ContentManifest) -> int:
    """Rename `staging` onto versions/<manifest.version>; while that number is taken (another
    exporter got there first), rewrite the staged manifest for the next free number and retry."""
    number = manifest.version
    for _ in range(MAX_ALLOCATION_ATTEMPTS):
        faults.checkpoint("before_version_rename")
        try:
            # Version dirs are never empty, so rename(2) fails instead of replacing one.
            staging.rename(layout.version_dir(number))
            return number
        except OSError as exc:
            if exc.errno not in _TAKEN:
                raise
        number = max(max(layout.version_numbers(), default=0), number) + 1
        manifest = replace(manifest, version=number)
        replace_durably(staging / MANIFEST_NAME, manifest.to_bytes())
    raise OSError(errno.EEXIST, "no free version number", str(layout.versions_dir))
