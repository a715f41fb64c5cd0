"""Build a version's `files/` tree inside a private staging dir, durably, and describe it.

Input is a plan: one PlannedEntry per path, parents first, saying where the content lives and
whether that source is immutable (then a hardlink is enough and, when the source is an already
published version, its sha256 is reused instead of re-read). Everything is validated before the
first byte is written; files are fsynced as placed, directories at the end, children first.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from runner import faults
from runner.artifacts.contents import ContentManifest, Entry, FileHasher, walk_tree
from runner.artifacts.disk import copy_file, fsync_dir, fsync_file, link_or_copy
from runner.artifacts.errors import ArtifactCorruptError
from runner.artifacts.overlay import MergedEntry
from runner.artifacts.safety import (
    EntryType,
    check_links_resolve_inside,
    check_relpath,
    entry_type,
    safe_mode,
)

ProgressFn = Callable[[int, int], None]
FILES_DIR_MODE = 0o755
_PROGRESS_EVERY = 256


@dataclass(frozen=True)
class PlannedEntry:
    """One path to place: `known` is the manifest entry of an immutable published source."""

    relpath: str
    type: EntryType
    source: Path
    info: os.stat_result
    target: str | None = None
    known: Entry | None = None
    linkable: bool = False


@dataclass(frozen=True)
class BuildStats:
    """How the tree was built: the metadata-only path shows as linked + reused, zero copied."""

    entries: int
    linked: int
    copied: int
    hashed: int
    reused: int


def plan_merge(merged: Iterable[MergedEntry], lower: ContentManifest | None) -> list[PlannedEntry]:
    """Plan a published tree from an overlay merge; lower entries must match the lower manifest."""
    plan: list[PlannedEntry] = []
    for item in merged:
        # os.readlink, not Path.readlink: the target must stay byte for byte (no normalisation).
        target = os.readlink(item.source) if item.type == "symlink" else None
        known = None
        if item.origin == "lower":
            known = lower.entries.get(item.relpath) if lower is not None else None
            if known is None or known.type != item.type or known.target != target:
                # Never carry a damaged lower version forward into a new one.
                raise ArtifactCorruptError(
                    f"lower version entry {item.relpath!r} does not match its manifest",
                    hint="run `runner artifact verify` on the imported version",
                )
        plan.append(PlannedEntry(item.relpath, item.type, item.source, item.info, target, known, True))
    return plan


def plan_walk(source_dir: Path, *, linkable: bool) -> list[PlannedEntry]:
    """Plan a tree from a plain directory; special files are refused by name."""
    plan: list[PlannedEntry] = []
    for relpath, info in walk_tree(source_dir):
        kind = entry_type(info.st_mode, relpath)
        path = source_dir / relpath
        target = os.readlink(path) if kind == "symlink" else None  # byte for byte, as above
        plan.append(PlannedEntry(relpath, kind, path, info, target, None, linkable))
    return plan


def validate_plan(plan: list[PlannedEntry]) -> None:
    """Refuse bad names and every symlink that is absolute or resolves outside the root."""
    links: dict[str, str] = {}
    for item in plan:
        if check_relpath(item.relpath) != item.relpath:
            raise ArtifactCorruptError(f"non-canonical path {item.relpath!r} in a tree walk")
        if item.type == "symlink" and item.target is not None:
            links[item.relpath] = item.target
    check_links_resolve_inside(links)


def build_files(
    plan: list[PlannedEntry], files_dir: Path, hasher: FileHasher, on_progress: ProgressFn | None = None
) -> tuple[dict[str, Entry], BuildStats]:
    """Place every entry of a validated plan under `files_dir` (which must not exist)."""
    files_dir.mkdir(mode=FILES_DIR_MODE)
    builder = _Builder(files_dir, hasher)
    for done, item in enumerate(plan, start=1):
        builder.place(item)
        if done == 1:
            faults.checkpoint("during_export_stream")
        if on_progress is not None and (done % _PROGRESS_EVERY == 0 or done == len(plan)):
            on_progress(done, len(plan))
    builder.finish_dirs()
    return builder.entries, builder.stats(len(plan))


class _Builder:
    """Mutable while one tree is being placed; discarded afterwards."""

    def __init__(self, files_dir: Path, hasher: FileHasher) -> None:
        self.files_dir = files_dir
        self.hasher = hasher
        self.entries: dict[str, Entry] = {}
        self.dirs: list[tuple[Path, int]] = []
        self.linked = self.copied = self.reused = 0
        self.hash_calls_at_start = hasher.calls

    def stats(self, total: int) -> BuildStats:
        hashed = self.hasher.calls - self.hash_calls_at_start
        return BuildStats(total, self.linked, self.copied, hashed, self.reused)

    def place(self, item: PlannedEntry) -> None:
        dest = self.files_dir / item.relpath
        if item.type == "dir":
            # Writable while children are placed; the real mode is applied in finish_dirs().
            dest.mkdir(mode=0o700)
            self.dirs.append((dest, safe_mode(item.info.st_mode)))
            self.entries[item.relpath] = Entry("dir", safe_mode(item.info.st_mode))
        elif item.type == "symlink":
            target = str(item.target)
            dest.symlink_to(target)
            self.entries[item.relpath] = Entry("symlink", 0o777, len(os.fsencode(target)), target=target)
        else:
            self.entries[item.relpath] = self._place_file(item, dest)

    def _place_file(self, item: PlannedEntry, dest: Path) -> Entry:
        mode = safe_mode(item.info.st_mode)
        # A hardlink shares the inode, so its mode cannot be changed without touching the source.
        if item.linkable and mode == stat.S_IMODE(item.info.st_mode):
            if link_or_copy(item.source, dest):
                self.linked += 1
                if item.known is None:
                    fsync_file(dest)  # a stopped run's upper file: its data may still be dirty
            else:
                self.copied += 1
        else:
            copy_file(item.source, dest, mode)
            self.copied += 1
        placed = os.lstat(dest)
        if item.known is not None:
            return self._reuse(item.relpath, item.known, placed)
        digest = self.hasher.hash_file(dest)
        return Entry("file", safe_mode(placed.st_mode), placed.st_size, sha256=digest)

    def _reuse(self, relpath: str, known: Entry, placed: os.stat_result) -> Entry:
        if placed.st_size != known.size or safe_mode(placed.st_mode) != known.mode:
            raise ArtifactCorruptError(
                f"lower version file {relpath!r} no longer matches its manifest (size or mode)",
                hint="run `runner artifact verify --deep` on the imported version",
            )
        self.reused += 1
        return known

    def finish_dirs(self) -> None:
        for path, mode in reversed(self.dirs):
            path.chmod(mode)
        for path, _ in reversed(self.dirs):
            _fsync_dir_or_sync(path)
        _fsync_dir_or_sync(self.files_dir)


def _fsync_dir_or_sync(path: Path) -> None:
    try:
        fsync_dir(path)
    except PermissionError:
        # A directory without read permission cannot be opened by a non-root publisher;
        # a whole-system sync is slower but gives the same durability.
        os.sync()
