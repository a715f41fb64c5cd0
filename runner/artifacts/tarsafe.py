"""Extract tar streams from containers (`get_archive`) or users without letting them escape (§5.5).

Two layers. Ours validates every member before it touches the disk: only regular files,
directories and relative symlinks that resolve inside the root; no hardlinks, devices or FIFOs;
no absolute names, `..`, NUL, duplicate names or paths through a symlink; caps on member count
and total size, checked on the header so a 10 GB member is refused without reading it. Symlinks
are created last, after the whole archive is known and every link resolved through the tree.
Then tarfile's own `filter="data"` (PEP 706) extracts, as a second opinion where available.
A seekable input is fully validated before the first write; a pipe is read once, validated
member by member, and on any refusal everything extracted is removed.
"""

from __future__ import annotations

import copy
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runner.artifacts.disk import force_rmtree
from runner.artifacts.errors import ArchiveLimitError, UnsafeEntryError
from runner.artifacts.safety import check_link_target, check_links_resolve_inside, check_relpath, safe_mode

_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_REFUSED_TYPES = (
    (tarfile.TarInfo.islnk, "hardlink members are not allowed"),
    (tarfile.TarInfo.ischr, "character devices are not allowed"),
    (tarfile.TarInfo.isblk, "block devices are not allowed"),
    (tarfile.TarInfo.isfifo, "FIFOs are not allowed"),
)


@dataclass(frozen=True)
class ExtractSummary:
    members: int
    bytes: int


def safe_extract(fileobj: IO[bytes], dest: Path, *, max_members: int, max_bytes: int) -> ExtractSummary:
    """Extract the tar stream `fileobj` into `dest` (absent or empty) or raise, leaving `dest` empty.

    A seekable `fileobj` is validated completely (headers only) before anything is written; a
    pipe is validated member by member as it streams, and anything written is removed on refusal.
    """
    created = not dest.exists()
    if not created and (not dest.is_dir() or dest.is_symlink() or any(dest.iterdir())):
        raise UnsafeEntryError(str(dest), "extraction target must be absent or an empty directory")
    dest.mkdir(mode=0o700, exist_ok=True)
    checker = _Checker(max_members, max_bytes)
    try:
        if _seekable(fileobj):
            _extract_seekable(fileobj, dest, checker)
        else:
            _extract_stream(fileobj, dest, checker)
    except BaseException as exc:
        _empty(dest, remove=created)
        if isinstance(exc, (tarfile.TarError, EOFError)):
            raise UnsafeEntryError("<archive>", f"unreadable tar stream: {exc}") from exc
        raise
    return ExtractSummary(checker.members, checker.bytes)


def _seekable(fileobj: IO[bytes]) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _extract_seekable(fileobj: IO[bytes], dest: Path, checker: _Checker) -> None:
    with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
        # Pre-pass over headers only (data is skipped by seeking): nothing is written unless all pass.
        planned = [clean for member in archive if (clean := checker.check(member)) is not None]
        checker.finish()
        for clean in sorted(planned, key=tarfile.TarInfo.issym):  # stable: links last
            _extract(archive, clean, dest)


def _extract_stream(fileobj: IO[bytes], dest: Path, checker: _Checker) -> None:
    with tarfile.open(fileobj=fileobj, mode="r|*") as archive:
        deferred: list[tarfile.TarInfo] = []
        for member in archive:
            clean = checker.check(member)
            if clean is None:
                continue
            if clean.issym():
                deferred.append(clean)  # created once the whole tree is known and links are resolved
            else:
                _extract(archive, clean, dest)
        checker.finish()
        for clean in deferred:
            _extract(archive, clean, dest)


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if not _HAS_DATA_FILTER:  # pragma: no cover - Python < 3.10.12 without PEP 706
        archive.extract(member, path=dest)
        return
    try:
        archive.extract(member, path=dest, filter="data")
    except tarfile.FilterError as exc:
        # The second layer disagreed with the first: refuse, naming the member.
        raise UnsafeEntryError(member.name, f"refused by tarfile's data filter: {exc}") from exc


def _empty(dest: Path, *, remove: bool) -> None:
    if remove:
        force_rmtree(dest)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            force_rmtree(child)
        else:
            child.unlink()


class _Checker:
    """Validation state over one archive: names seen so far, symlinks, running totals."""

    def __init__(self, max_members: int, max_bytes: int) -> None:
        self.max_members = max_members
        self.max_bytes = max_bytes
        self.seen: dict[str, str] = {}  # name → "file" | "dir" | "symlink" | "implicit" (a parent)
        self.links: dict[str, str] = {}
        self.members = 0
        self.bytes = 0

    def finish(self) -> None:
        """Resolve every symlink through the complete tree (chains, links via other links)."""
        check_links_resolve_inside(self.links)

    def check(self, member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        """Validate one member; return a sanitised copy to extract, or None for the root entry."""
        self.members += 1
        if self.members > self.max_members:
            raise ArchiveLimitError(
                f"archive has more than {self.max_members} members (stopped at {member.name!r})",
                hint="export a smaller tree or raise the member cap",
            )
        name = check_relpath(member.name)
        for refused, reason in _REFUSED_TYPES:
            if refused(member):
                raise UnsafeEntryError(member.name, reason)
        if not (member.isreg() or member.isdir() or member.issym()):
            raise UnsafeEntryError(member.name, f"unsupported member type {member.type!r}")
        if not name:
            if member.isdir():
                return None
            raise UnsafeEntryError(member.name, "a non-directory cannot replace the extraction root")
        self._check_placement(member.name, name, member)
        self._count_bytes(member)
        if member.issym():
            check_link_target(name, member.linkname)
            self.links[name] = member.linkname
        return _sanitised(member, name)

    def _count_bytes(self, member: tarfile.TarInfo) -> None:
        if not member.isreg():
            return
        self.bytes += member.size
        if self.bytes > self.max_bytes:
            raise ArchiveLimitError(
                f"archive exceeds {self.max_bytes} bytes at member {member.name!r}",
                hint="export a smaller tree or raise the size cap",
            )

    def _check_placement(self, raw: str, name: str, member: tarfile.TarInfo) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            kind = self.seen.setdefault(parent, "implicit")
            if kind == "symlink":
                raise UnsafeEntryError(raw, f"path goes through the symlink {parent!r}")
            if kind == "file":
                raise UnsafeEntryError(raw, f"parent {parent!r} is a file")
        previous = self.seen.get(name)
        if previous is not None and not (previous == "implicit" and member.isdir()):
            raise UnsafeEntryError(raw, "duplicate member name")
        self.seen[name] = "dir" if member.isdir() else "symlink" if member.issym() else "file"


def _sanitised(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    """A copy with the normalised name, safe mode bits and our own ownership (never chown to the tar's)."""
    clean = copy.copy(member)  # keeps the data offset, which extraction needs
    clean.name = name
    clean.mode = safe_mode(member.mode)
    clean.uid, clean.gid = os.getuid(), os.getgid()
    clean.uname = clean.gname = ""
    return clean
