"""Where an artifact lives on disk and the per-artifact lock.

    <root>/<kind>/<name components…>/
        versions/000001/{MANIFEST.json, files/…}   immutable once renamed in
        versions/000004/REMOVED                      tombstone: the number is never reused
        LATEST                                       "000001\\n", replaced atomically
        LATEST.tmp.<uuid>                            only while LATEST moves (gc removes leftovers)
        .staging/<uuid>/                             one per publish in flight (flock-held while live)
        .lock                                        flock serialising LATEST moves and removals
    <root>/.trash/<uuid>/                            whole artifacts on their way out

All directories are 0700: the store belongs to the user running runner.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.artifacts.refs import Kind, check_kind, check_name

PRIVATE_DIR_MODE = 0o700
VERSION_DIGITS = 6
MANIFEST_NAME = "MANIFEST.json"
FILES_NAME = "files"
TOMBSTONE_NAME = "REMOVED"
LATEST_NAME = "LATEST"
LATEST_TMP_PREFIX = "LATEST.tmp."
STAGING_NAME = ".staging"
LOCK_NAME = ".lock"
TRASH_NAME = ".trash"
_VERSION_DIR = re.compile(r"[0-9]{6,}")


def format_version(number: int) -> str:
    return f"{number:0{VERSION_DIGITS}d}"


def parse_version_dirname(name: str) -> int | None:
    """The version number a `versions/` entry stands for, or None for anything else."""
    return int(name) if _VERSION_DIR.fullmatch(name) else None


def ensure_private_dir(path: Path) -> Path:
    """mkdir -p with 0700 on every directory this call creates."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent publisher made it first
            directory.mkdir(mode=PRIVATE_DIR_MODE)
    return path


@dataclass(frozen=True)
class ArtifactLayout:
    """Paths of one artifact under the store root. Pure: creates nothing."""

    root: Path
    kind: Kind
    name: str

    def __post_init__(self) -> None:
        check_kind(self.kind)
        check_name(self.name)

    @property
    def dir(self) -> Path:
        return self.root.joinpath(self.kind, *self.name.split("/"))

    @property
    def versions_dir(self) -> Path:
        return self.dir / "versions"

    @property
    def latest_path(self) -> Path:
        return self.dir / LATEST_NAME

    @property
    def staging_dir(self) -> Path:
        return self.dir / STAGING_NAME

    @property
    def lock_path(self) -> Path:
        return self.dir / LOCK_NAME

    def version_dir(self, number: int) -> Path:
        return self.versions_dir / format_version(number)

    def version_numbers(self) -> list[int]:
        """Every number present in versions/ (complete, tombstoned or foreign), ascending."""
        try:
            names = [path.name for path in self.versions_dir.iterdir()]
        except FileNotFoundError:
            return []
        numbers = (parse_version_dirname(name) for name in names)
        return sorted(number for number in numbers if number is not None)

    def ensure(self) -> None:
        ensure_private_dir(self.versions_dir)
        ensure_private_dir(self.staging_dir)


@contextlib.contextmanager
def artifact_lock(layout: ArtifactLayout) -> Iterator[None]:
    """Hold the per-artifact exclusive flock (released by the kernel if the holder dies)."""
    ensure_private_dir(layout.dir)
    fd = os.open(layout.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
