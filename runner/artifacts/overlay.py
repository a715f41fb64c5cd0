"""Merge an overlayfs lower version and a stopped run's upper dir into one entry list, without copying.

Overlay upper semantics (Documentation/filesystems/overlayfs.rst): a character device 0:0 (or,
since Linux 6.7, an empty file with `overlay.whiteout`) deletes that path from lower; a
directory with `overlay.opaque=y` hides the lower directory's content; an upper non-directory
replaces whatever lower had. The xattrs come as `trusted.overlay.*` (privileged mounts) or
`user.overlay.*` (`userxattr` mounts). Redirected directories and metacopy files describe content
that lives elsewhere in lower; merging those from metadata alone would be wrong, so they raise
OverlayMetadataError and the caller falls back to exporting the mounted view.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner.artifacts.errors import OverlayMetadataError
from runner.artifacts.safety import EntryType, entry_type

Origin = Literal["lower", "upper"]
_PREFIXES = ("trusted.overlay.", "user.overlay.")
_REFUSED = ("redirect", "metacopy")
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.ENODATA, errno.EPERM})


@dataclass(frozen=True)
class MergedEntry:
    """One path of the merged tree and where its content physically lives."""

    relpath: str
    type: EntryType
    origin: Origin
    source: Path
    info: os.stat_result


def merge_trees(lower: Path | None, upper: Path) -> list[MergedEntry]:
    """The merged view of `lower` (a version's files dir, or None) under `upper`, parents first."""
    root_attrs = overlay_xattrs(upper)
    _refuse_metadata_only("", root_attrs)
    if _read(upper, root_attrs, "opaque") == b"y":
        lower = None
    entries: list[MergedEntry] = []
    _merge_dir(entries, "", lower, upper)
    return entries


def overlay_xattrs(path: Path) -> dict[str, str]:
    """Overlay xattrs of `path` (never following a link) as {suffix: full name}, e.g. {"opaque": ...}."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return {}
        raise
    found: dict[str, str] = {}
    for name in names:
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                found[name[len(prefix) :]] = name
    return found


def _read(path: Path, attrs: dict[str, str], suffix: str) -> bytes | None:
    name = attrs.get(suffix)
    return None if name is None else os.getxattr(path, name, follow_symlinks=False)


def _refuse_metadata_only(relpath: str, attrs: dict[str, str]) -> None:
    for suffix in _REFUSED:
        if suffix in attrs:
            raise OverlayMetadataError(relpath or ".", attrs[suffix])


def _listing(directory: Path | None) -> dict[str, os.stat_result]:
    if directory is None:
        return {}
    with os.scandir(directory) as listing:
        return {entry.name: entry.stat(follow_symlinks=False) for entry in listing}


def _merge_dir(entries: list[MergedEntry], prefix: str, lower: Path | None, upper: Path | None) -> None:
    lower_items = _listing(lower)
    upper_items = _listing(upper)
    for name in sorted(lower_items.keys() | upper_items.keys()):
        relpath = f"{prefix}/{name}" if prefix else name
        if upper is not None and name in upper_items:
            lower_info = lower_items.get(name)
            merge_lower = lower is not None and lower_info is not None and stat.S_ISDIR(lower_info.st_mode)
            lower_dir = lower / name if merge_lower and lower is not None else None
            _take_upper(entries, relpath, upper / name, upper_items[name], lower_dir)
        elif lower is not None:
            _take_lower(entries, relpath, lower / name, lower_items[name])


def _take_upper(
    entries: list[MergedEntry], relpath: str, path: Path, info: os.stat_result, lower_dir: Path | None
) -> None:
    attrs = overlay_xattrs(path)
    if _is_whiteout(info, attrs):
        return
    kind = entry_type(info.st_mode, relpath)  # refuses devices, FIFOs and sockets by name
    _refuse_metadata_only(relpath, attrs)
    entries.append(MergedEntry(relpath, kind, "upper", path, info))
    if kind != "dir":
        return
    # "y" = opaque. Linux 6.7+ also writes "x" (has xattr whiteouts, not opaque): keep lower then.
    opaque = _read(path, attrs, "opaque") == b"y"
    _merge_dir(entries, relpath, None if opaque else lower_dir, path)


def _take_lower(entries: list[MergedEntry], relpath: str, path: Path, info: os.stat_result) -> None:
    kind = entry_type(info.st_mode, relpath)
    entries.append(MergedEntry(relpath, kind, "lower", path, info))
    if kind == "dir":
        _merge_dir(entries, relpath, path, None)


def _is_whiteout(info: os.stat_result, attrs: dict[str, str]) -> bool:
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        return True
    return stat.S_ISREG(info.st_mode) and info.st_size == 0 and "whiteout" in attrs
