"""What may enter the store (reliability §5.5): entry types, modes, relative paths and symlink targets.

Only regular files, directories and relative symlinks that resolve inside the tree root are
accepted; setuid/setgid/sticky bits are stripped. Symlinks are checked twice: lexically on their
own (cheap, precise message) and then by resolving every link through the whole tree, following
other links on the way, because `s/d -> ..` plus `s/l -> d/../../x` each look harmless lexically.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from typing import Literal

from runner.artifacts.errors import UnsafeEntryError

EntryType = Literal["file", "dir", "symlink"]
# Linux gives up after 40 symlink hops (ELOOP); so do we.
MAX_LINK_HOPS = 40
PERMISSION_BITS = 0o777
_SPECIAL = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def safe_mode(mode: int) -> int:
    """Permission bits only: setuid, setgid and sticky are dropped."""
    return stat.S_IMODE(mode) & PERMISSION_BITS


def entry_type(st_mode: int, relpath: str) -> EntryType:
    """Map an lstat mode onto an accepted entry type or refuse the entry, naming it."""
    if stat.S_ISREG(st_mode):
        return "file"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISLNK(st_mode):
        return "symlink"
    for predicate, what in _SPECIAL:
        if predicate(st_mode):
            raise UnsafeEntryError(relpath, f"{what} cannot be stored", hint="remove it or move it elsewhere")
    raise UnsafeEntryError(relpath, f"unknown file type {stat.S_IFMT(st_mode):#o}")


def check_relpath(path: str) -> str:
    """Normalise a relative path (`./a//b/` → `a/b`); refuse NUL, absolute paths and `..`."""
    if "\x00" in path:
        raise UnsafeEntryError(path, "the name contains a NUL byte")
    if path.startswith("/"):
        raise UnsafeEntryError(path, "absolute names are not allowed")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeEntryError(path, "'..' components are not allowed")
    return "/".join(parts)


def check_link_target(relpath: str, target: str) -> None:
    """Refuse an absolute or lexically escaping target, resolved from the link's own directory."""
    if not target or "\x00" in target:
        raise UnsafeEntryError(relpath, "empty or NUL-containing symlink target")
    if target.startswith("/"):
        raise UnsafeEntryError(relpath, f"symlink to absolute path {target!r}", hint="use a relative link")
    depth = relpath.count("/")  # components of the link's parent directory
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise UnsafeEntryError(relpath, f"symlink target {target!r} escapes the tree root")
        elif part not in ("", "."):
            depth += 1


def check_links_resolve_inside(links: Mapping[str, str]) -> None:
    """Resolve every symlink through the tree (following other links) and refuse escapes and loops.

    `links` maps each symlink's normalised relpath to its target; paths absent from it are
    treated as directories or files, and missing ones as plain names (a dangling link is fine).
    """
    for relpath, target in links.items():
        check_link_target(relpath, target)
        parent = relpath.split("/")[:-1]
        _Resolver(links, relpath).walk(parent, target)


class _Resolver:
    """Kernel-style path walk over a virtual tree; counts hops across the whole resolution."""

    def __init__(self, links: Mapping[str, str], origin: str) -> None:
        self._links = links
        self._origin = origin
        self._hops = 0

    def walk(self, start: list[str], target: str) -> list[str]:
        current = list(start)
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not current:
                    raise UnsafeEntryError(self._origin, "symlink resolves outside the tree root")
                current.pop()
                continue
            current.append(part)
            next_target = self._links.get("/".join(current))
            if next_target is None:
                continue
            self._hops += 1
            if self._hops > MAX_LINK_HOPS:
                raise UnsafeEntryError(self._origin, "symlink loop (more than 40 hops)")
            current = self.walk(current[:-1], next_target)
        return current
