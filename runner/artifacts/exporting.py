"""Copy a version out of the store into a user directory (`runner artifact export`).

The destination is user-owned and mutable, so bytes are copied (reflinked where the filesystem
can), never hardlinked: a later edit there must not change the immutable version. Symlinks are
recreated from the manifest's target, never followed. The copy is built in a sibling temporary
directory and renamed into place, so the destination appears complete or not at all.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from runner.artifacts.contents import verify_tree
from runner.artifacts.disk import copy_file, force_rmtree
from runner.artifacts.errors import ArtifactCorruptError
from runner.artifacts.versions import VersionHandle
from runner.errors import UsageError


def check_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"{dest} exists and is not a directory", hint="choose a new directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise UsageError(f"{dest} is not empty", hint="choose a new or empty directory")
    if not dest.parent.is_dir():
        raise UsageError(f"{dest.parent} does not exist", hint="create the parent directory first")


def export_version(version: VersionHandle, dest: Path) -> int:
    """Copy `version` to `dest` (absent or empty); returns the number of entries written."""
    check_destination(dest)
    manifest = version.manifest
    problems = verify_tree(version.files_dir, manifest)
    if problems:
        raise ArtifactCorruptError(
            f"{version.ref} does not match its manifest ({len(problems)} problems, first: {problems[0]})",
            hint="run `runner artifact verify` and remove the damaged version",
        )
    tmp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()  # the user's umask decides, as for any directory they create
    try:
        _copy_entries(version, tmp)
        # rename(2) replaces an empty directory, so an empty `dest` is fine too.
        tmp.rename(dest)
    except BaseException:
        force_rmtree(tmp)
        raise
    return len(manifest.entries)


def _copy_entries(version: VersionHandle, tmp: Path) -> None:
    entries = version.manifest.entries
    dirs: list[tuple[Path, int]] = []
    for relpath in sorted(entries):  # a parent sorts before everything under it
        entry = entries[relpath]
        dest = tmp / relpath
        if entry.type == "dir":
            dest.mkdir(mode=0o700)
            dirs.append((dest, entry.mode))
        elif entry.type == "symlink":
            dest.symlink_to(str(entry.target))
        else:
            copy_file(version.files_dir / relpath, dest, entry.mode)
    for path, mode in reversed(dirs):
        path.chmod(mode)
