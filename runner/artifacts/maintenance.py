"""Store housekeeping: listing artifacts, removing versions or whole artifacts, collecting leftovers.

Removal never reuses a version number: a removed version leaves `versions/<n>/REMOVED` behind
(the directory stays non-empty, so a concurrent publisher's rename onto <n> fails and it moves
on). Removing the version LATEST names moves LATEST back to the highest other complete version
first, so at every instant LATEST names a complete version or is absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from pathlib import Path

from runner.artifacts.disk import force_rmtree, fsync_dir, write_durably
from runner.artifacts.latest import read_latest, write_latest
from runner.artifacts.layout import (
    FILES_NAME,
    LATEST_NAME,
    LATEST_TMP_PREFIX,
    MANIFEST_NAME,
    STAGING_NAME,
    TOMBSTONE_NAME,
    TRASH_NAME,
    ArtifactLayout,
    artifact_lock,
    ensure_private_dir,
)
from runner.artifacts.refs import KINDS, MAX_COMPONENTS, ArtifactRef
from runner.artifacts.versions import complete_versions, is_complete

_OWN_ENTRIES = ("versions", STAGING_NAME)


def list_artifacts(root: Path) -> list[ArtifactRef]:
    """Every artifact under `root` (with or without complete versions), sorted by kind then name."""
    found: list[ArtifactRef] = []
    for kind in KINDS:
        stack: list[tuple[Path, tuple[str, ...]]] = [(root / kind, ())]
        while stack:
            directory, parts = stack.pop()
            if parts and ((directory / "versions").is_dir() or (directory / LATEST_NAME).is_file()):
                found.append(ArtifactRef(kind, "/".join(parts)))
            if len(parts) == MAX_COMPONENTS or not directory.is_dir():
                continue
            with os.scandir(directory) as listing:
                children = [c for c in listing if c.is_dir(follow_symlinks=False) and _may_nest(c.name)]
            stack.extend((Path(child.path), (*parts, child.name)) for child in children)
    return sorted(found, key=lambda ref: (ref.kind, ref.name))


def _may_nest(name: str) -> bool:
    """A child dir that could be (or contain) a nested artifact, not the store's own bookkeeping."""
    return not name.startswith(".") and name != "versions"


def remove_version(layout: ArtifactLayout, number: int) -> None:
    """Remove one complete version; if LATEST names it, LATEST first moves to the previous complete one."""
    with artifact_lock(layout):
        if not is_complete(layout, number):
            raise FileNotFoundError(number)
        if read_latest(layout) == number:
            others = [n for n in complete_versions(layout) if n != number]
            write_latest(layout, others[-1] if others else None)
        directory = layout.version_dir(number)
        write_durably(directory / TOMBSTONE_NAME, b"removed\n")
        trash = _trash_dir(layout.staging_dir)
        for name in (MANIFEST_NAME, FILES_NAME):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).rename(trash / name)
        fsync_dir(directory)
    force_rmtree(trash)


def remove_artifact(layout: ArtifactLayout) -> None:
    """Remove every version, LATEST and staging of one artifact; nested artifacts are left alone."""
    with artifact_lock(layout):
        trash = _trash_dir(layout.root / TRASH_NAME)
        for name in _OWN_ENTRIES:
            with contextlib.suppress(FileNotFoundError):
                (layout.dir / name).rename(trash / name)
        write_latest(layout, None)
        for leftover in layout.dir.glob(f"{LATEST_TMP_PREFIX}*"):
            leftover.unlink()
        layout.lock_path.unlink()
    force_rmtree(trash)
    _prune_empty_parents(layout)


def _trash_dir(parent: Path) -> Path:
    ensure_private_dir(parent)
    trash = parent / f"trash-{uuid.uuid4().hex}"
    trash.mkdir(mode=0o700)
    return trash


def _prune_empty_parents(layout: ArtifactLayout) -> None:
    directory = layout.dir
    stop = layout.root / layout.kind
    while directory != stop:
        try:
            directory.rmdir()
        except OSError:
            return  # not empty: a nested artifact or a concurrent publisher lives here
        directory = directory.parent


def gc_staging(root: Path, older_than_s: float) -> int:
    """Remove staging dirs, trash and LATEST.tmp files older than the grace; never a live publish's."""
    cutoff = time.time() - older_than_s
    removed = _collect(root / TRASH_NAME, cutoff)
    for ref in list_artifacts(root):
        layout = ArtifactLayout(root, ref.kind, ref.name)
        removed += _collect(layout.staging_dir, cutoff)
        for leftover in layout.dir.glob(f"{LATEST_TMP_PREFIX}*"):
            if _older(leftover, cutoff):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
                    removed += 1
    return removed


def _collect(parent: Path, cutoff: float) -> int:
    try:
        children = [Path(entry.path) for entry in os.scandir(parent)]
    except FileNotFoundError:
        return 0
    removed = 0
    for child in children:
        if _older(child, cutoff) and not _in_use(child):
            force_rmtree(child)
            removed += 1
    return removed


def _older(path: Path, cutoff: float) -> bool:
    try:
        return os.lstat(path).st_mtime < cutoff
    except FileNotFoundError:
        return False


def _in_use(path: Path) -> bool:
    """True when a live publisher holds the staging dir's flock (released by the kernel on death)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
