"""The content manifest (MANIFEST.json) of a version, file hashing, tree walking and verification.

MANIFEST.json is written last into the staging dir, so its presence in `versions/<n>/` marks a
complete version. Entries are keyed by relative path inside `files/`; directories are listed too,
so `verify` can tell "nothing missing and nothing extra" without trusting anything on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from runner.artifacts.errors import ArtifactCorruptError
from runner.artifacts.refs import ArtifactRef, Kind, check_kind
from runner.artifacts.safety import EntryType

FORMAT_VERSION = 1
_CHUNK = 1 << 20
_TYPES: tuple[EntryType, ...] = ("file", "dir", "symlink")


@dataclass(frozen=True)
class Entry:
    """One path in a version: its type, permission bits, size, and sha256 (files) or target (links)."""

    type: EntryType
    mode: int
    size: int = 0
    sha256: str | None = None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "mode": self.mode, "size": self.size}
        if self.sha256 is not None:
            data["sha256"] = self.sha256
        if self.target is not None:
            data["target"] = self.target
        return data

    @classmethod
    def from_json(cls, relpath: str, data: Any) -> Entry:
        try:
            entry = cls(data["type"], data["mode"], data["size"], data.get("sha256"), data.get("target"))
        except (KeyError, TypeError) as exc:
            raise ArtifactCorruptError(f"manifest entry {relpath!r} is malformed: {exc}") from None
        if entry.type not in _TYPES or (entry.type == "file") != (entry.sha256 is not None):
            raise ArtifactCorruptError(f"manifest entry {relpath!r} is malformed")
        if (entry.type == "symlink") != (entry.target is not None):
            raise ArtifactCorruptError(f"manifest entry {relpath!r} is malformed")
        return entry


@dataclass(frozen=True)
class Totals:
    files: int
    dirs: int
    symlinks: int
    bytes: int


@dataclass(frozen=True)
class ContentManifest:
    """Everything MANIFEST.json says about one version."""

    kind: Kind
    name: str
    version: int
    created: str
    source_run_id: str | None
    entries: Mapping[str, Entry] = field(repr=False)

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(self.kind, self.name, self.version)

    @property
    def totals(self) -> Totals:
        kinds = [entry.type for entry in self.entries.values()]
        size = sum(entry.size for entry in self.entries.values() if entry.type == "file")
        return Totals(kinds.count("file"), kinds.count("dir"), kinds.count("symlink"), size)

    def to_bytes(self) -> bytes:
        totals = self.totals
        document = {
            "format": FORMAT_VERSION,
            "artifact": {"kind": self.kind, "name": self.name},
            "version": self.version,
            "created": self.created,
            "source_run_id": self.source_run_id,
            "totals": {
                "files": totals.files,
                "dirs": totals.dirs,
                "symlinks": totals.symlinks,
                "bytes": totals.bytes,
            },
            "entries": {path: self.entries[path].to_json() for path in sorted(self.entries)},
        }
        return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ContentManifest:
        try:
            document = json.loads(data)
            if document["format"] != FORMAT_VERSION:
                raise ArtifactCorruptError(f"unsupported manifest format {document['format']!r}")
            raw_entries = cast(dict[str, Any], document["entries"])
            entries = {path: Entry.from_json(path, value) for path, value in raw_entries.items()}
            return cls(
                check_kind(document["artifact"]["kind"]),
                document["artifact"]["name"],
                int(document["version"]),
                str(document["created"]),
                document["source_run_id"],
                entries,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactCorruptError(f"MANIFEST.json is unreadable: {exc}") from None


class FileHasher:
    """sha256 of file contents. Mutable on purpose: it counts calls and bytes, so callers and tests
    can see that an export hashed only what changed."""

    def __init__(self) -> None:
        self.calls = 0
        self.bytes = 0

    def hash_file(self, path: Path) -> str:
        digest = hashlib.sha256()
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as reader:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                self.bytes += len(chunk)
        self.calls += 1
        return digest.hexdigest()


def walk_tree(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relpath, lstat) for everything below `root`, parents before children; never follows links."""
    stack = [""]
    while stack:
        prefix = stack.pop()
        with os.scandir(root / prefix if prefix else root) as listing:
            found = sorted((entry.name, entry.stat(follow_symlinks=False)) for entry in listing)
        for name, info in found:
            relpath = f"{prefix}/{name}" if prefix else name
            yield relpath, info
            if stat.S_ISDIR(info.st_mode):
                stack.append(relpath)


def verify_tree(
    files_dir: Path, manifest: ContentManifest, *, deep: bool = False, hasher: FileHasher | None = None
) -> list[str]:
    """Compare `files_dir` with `manifest`; return problems as "path: what is wrong" (empty = ok)."""
    if not files_dir.is_dir():
        return [f"{files_dir}: files directory is missing"]
    on_disk = dict(walk_tree(files_dir))
    problems = [f"{path}: not in the manifest" for path in sorted(on_disk.keys() - manifest.entries.keys())]
    for path in sorted(manifest.entries):
        info = on_disk.get(path)
        if info is None:
            problems.append(f"{path}: missing")
            continue
        problem = _entry_problem(files_dir / path, manifest.entries[path], info)
        if problem is None and deep and manifest.entries[path].type == "file":
            problem = _hash_problem(files_dir / path, manifest.entries[path], hasher or FileHasher())
        if problem is not None:
            problems.append(f"{path}: {problem}")
    return problems


def _entry_problem(path: Path, entry: Entry, info: os.stat_result) -> str | None:
    actual = _type_of(info.st_mode)
    if actual != entry.type:
        return f"expected a {entry.type}, found a {actual}"
    if entry.type == "symlink":
        target = os.readlink(path)  # not Path.readlink: that would normalise the target
        return None if target == entry.target else f"link target {target!r} != {entry.target!r}"
    if stat.S_IMODE(info.st_mode) != entry.mode:  # includes setuid/setgid/sticky, which must be absent
        return f"mode {stat.S_IMODE(info.st_mode):#o} != {entry.mode:#o}"
    if entry.type == "file" and info.st_size != entry.size:
        return f"size {info.st_size} != {entry.size}"
    return None


def _hash_problem(path: Path, entry: Entry, hasher: FileHasher) -> str | None:
    actual = hasher.hash_file(path)
    return None if actual == entry.sha256 else f"sha256 {actual[:12]}… != {str(entry.sha256)[:12]}…"


def _type_of(st_mode: int) -> str:
    if stat.S_ISREG(st_mode):
        return "file"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISLNK(st_mode):
        return "symlink"
    return "special file"
