"""ArtifactStore on real files: seeding from a host dir, verify, export, resolve, remove and gc."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest

from runner.artifacts import (
    ArtifactCorruptError,
    ArtifactRef,
    ArtifactStore,
    UnsafeEntryError,
)
from runner.errors import NotFoundError, PolicyError, UsageError

REF = ArtifactRef("artifact", "acme/proj/hf-cache")


def make_hf_cache(base: Path, blobs: int = 150) -> Path:
    """A Hugging Face hub cache: content in blobs/, snapshots/ as relative links into it."""
    repo = base / "hub" / "models--acme--tiny"
    for sub in ("blobs", "refs", ".locks", ".no_exist/c1"):
        (repo / sub).mkdir(parents=True)
    (repo / "refs" / "main").write_text("c1")
    (repo / ".no_exist" / "c1" / "missing.json").write_bytes(b"")
    for i in range(blobs):
        data = f"blob {i} ".encode() * (i + 1)
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        commit = "c1" if i % 2 else "c2"
        nested = "sub/" if i % 3 == 0 else ""
        link = repo / "snapshots" / commit / f"{nested}file{i}.bin"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(("../" * (3 if nested else 2)) + f"blobs/{digest}")
    (repo / "blobs" / "script.sh").write_bytes(b"#!/bin/sh\n")
    (repo / "blobs" / "script.sh").chmod(0o750)
    return base / "hub"


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


@pytest.fixture
def seeded(store: ArtifactStore, tmp_path: Path) -> Path:
    source = tmp_path / "src"
    make_hf_cache(source)
    store.publish_copy(REF.kind, REF.name, source, run_id="seed")
    return source


def links_of(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): os.readlink(p) for p in sorted(root.rglob("*")) if p.is_symlink()}


def test_publish_copy_keeps_hf_links_byte_for_byte(store: ArtifactStore, seeded: Path) -> None:
    version = store.resolve(REF)
    assert version is not None and version.number == 1 and version.warnings == ()
    assert store.verify(REF, deep=True) == []
    source_links = links_of(seeded)
    assert len(source_links) == 150
    assert links_of(version.files_dir) == source_links
    script = version.files_dir / "hub/models--acme--tiny/blobs/script.sh"
    assert stat.S_IMODE(script.lstat().st_mode) == 0o750
    # A copy, not a link: the user's source stays mutable without touching the version.
    assert script.stat().st_ino != (seeded / "hub/models--acme--tiny/blobs/script.sh").stat().st_ino
    totals = version.manifest.totals
    assert (totals.files, totals.symlinks) == (153, 150)  # 150 blobs + script + refs/main + missing.json
    layout = store.layout(REF.kind, REF.name)
    assert layout.latest_path.read_text() == "000001\n"
    for directory in (store.root / "artifact", layout.dir, layout.versions_dir, layout.version_dir(1)):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_manifest_document_shape(store: ArtifactStore, seeded: Path) -> None:
    layout = store.layout(REF.kind, REF.name)
    document = json.loads((layout.version_dir(1) / "MANIFEST.json").read_text())
    assert document["format"] == 1
    assert document["artifact"] == {"kind": "artifact", "name": REF.name}
    assert document["version"] == 1 and document["source_run_id"] == "seed"
    assert document["created"].endswith("Z")
    entry = document["entries"]["hub/models--acme--tiny/refs/main"]
    assert entry == {"type": "file", "mode": 0o644, "size": 2, "sha256": hashlib.sha256(b"c1").hexdigest()}
    link = next(v for k, v in document["entries"].items() if k.endswith("file0.bin"))
    assert link["type"] == "symlink" and link["target"].startswith("../../../blobs/")
    assert document["totals"]["files"] == 153


def test_verify_reports_each_kind_of_damage(store: ArtifactStore, seeded: Path) -> None:
    version = store.resolve(REF)
    assert version is not None
    repo = version.files_dir / "hub/models--acme--tiny"
    victim = next((repo / "blobs").glob("[0-9a-f]*"))
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))  # same size: only a deep verify can tell
    assert store.verify(REF) == []
    deep = store.verify(REF, deep=True)
    assert len(deep) == 1 and "sha256" in deep[0] and victim.name in deep[0]
    (repo / "extra").write_text("x")
    (repo / "refs" / "main").unlink()
    (repo / "blobs" / "script.sh").chmod(0o755)
    link = next((repo / "snapshots" / "c1").glob("file*.bin"))
    link.unlink()
    link.symlink_to("../../blobs/elsewhere")
    problems = "\n".join(store.verify(REF))
    assert "extra: not in the manifest" in problems
    assert "refs/main: missing" in problems
    assert "script.sh: mode 0o755 != 0o750" in problems
    assert f"{link.name}: link target '../../blobs/elsewhere'" in problems


def test_export_to_copies_out_with_links_kept(store: ArtifactStore, seeded: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()  # an empty destination is allowed
    store.export_to(REF, dest)
    assert links_of(dest) == links_of(seeded)
    blob = next((dest / "hub/models--acme--tiny/blobs").glob("[0-9a-f]*"))
    version = store.resolve(REF)
    assert version is not None
    stored = version.files_dir / blob.relative_to(dest)
    assert blob.read_bytes() == stored.read_bytes() and blob.stat().st_ino != stored.stat().st_ino
    blob.write_bytes(b"edited by the user")
    assert store.verify(REF, deep=True) == []
    with pytest.raises(UsageError, match="not empty"):
        store.export_to(REF, dest)
    with pytest.raises(NotFoundError, match="no version 9"):
        store.export_to(REF.pinned(9), tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src", "store"]  # no partial dirs left


def test_resolve_falls_back_and_says_why(store: ArtifactStore, seeded: Path) -> None:
    store.publish_copy(REF.kind, REF.name, seeded)
    layout = store.layout(REF.kind, REF.name)
    assert store.resolve(REF).number == 2  # type: ignore[union-attr]
    layout.latest_path.write_text("000009\n")
    version = store.resolve(REF)
    assert version is not None and version.number == 2
    assert "LATEST names version 9, which is missing or incomplete" in version.warnings[0]
    layout.latest_path.write_text("garbage")
    assert "unreadable" in store.resolve(REF).warnings[0]  # type: ignore[union-attr]
    layout.latest_path.unlink()
    assert "LATEST is missing" in store.resolve(REF).warnings[0]  # type: ignore[union-attr]
    assert store.resolve(REF.pinned(1)).number == 1  # type: ignore[union-attr]
    assert store.resolve(REF.pinned(3)) is None
    assert store.resolve(ArtifactRef("model", "acme/none")) is None


def test_remove_moves_latest_back_and_never_reuses_numbers(store: ArtifactStore, seeded: Path) -> None:
    for _ in range(2):
        store.publish_copy(REF.kind, REF.name, seeded)
    layout = store.layout(REF.kind, REF.name)
    store.remove(REF.kind, REF.name, 3)
    assert layout.latest_path.read_text() == "000002\n"
    assert sorted(p.name for p in layout.version_dir(3).iterdir()) == ["REMOVED"]
    assert [v.number for v in store.versions(REF.kind, REF.name)] == [1, 2]
    store.remove(REF.kind, REF.name, 1)  # not LATEST: LATEST stays
    assert layout.latest_path.read_text() == "000002\n"
    assert store.publish_copy(REF.kind, REF.name, seeded).number == 4
    with pytest.raises(NotFoundError, match="no version 3"):
        store.remove(REF.kind, REF.name, 3)
    with pytest.raises(NotFoundError):
        store.export_to(REF.pinned(1), seeded.parent / "x")
    store.remove(REF.kind, REF.name, 4)
    store.remove(REF.kind, REF.name, 2)
    assert not layout.latest_path.exists()
    assert store.resolve(REF) is None


def test_remove_artifact_leaves_nested_artifacts(store: ArtifactStore, seeded: Path) -> None:
    store.publish_copy("artifact", "acme/proj", seeded)
    assert store.list_artifacts() == [ArtifactRef("artifact", "acme/proj"), REF]
    store.remove("artifact", "acme/proj", None)
    assert store.list_artifacts() == [REF]
    assert store.verify(REF, deep=True) == []
    store.remove(REF.kind, REF.name, None)
    assert store.list_artifacts() == []
    assert not (store.root / "artifact" / "acme").exists()
    with pytest.raises(NotFoundError):
        store.remove(REF.kind, REF.name, None)


def test_gc_staging_removes_only_stale_and_dead(store: ArtifactStore, seeded: Path) -> None:
    layout = store.layout(REF.kind, REF.name)
    stale, fresh, live = (layout.staging_dir / n for n in ("stale", "fresh", "live"))
    for directory in (stale, fresh, live):
        (directory / "files" / "ro").mkdir(parents=True)
        (directory / "files" / "ro" / "f").write_text("x")
        (directory / "files" / "ro").chmod(0o555)
    old = time.time() - 3600
    (layout.dir / "LATEST.tmp.dead").write_text("000009\n")
    for path in (stale, live, layout.dir / "LATEST.tmp.dead"):
        os.utime(path, (old, old))
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a live publisher holds
        assert store.gc_staging(600) == 2  # stale dir + the old LATEST.tmp
        assert sorted(p.name for p in layout.staging_dir.iterdir()) == ["fresh", "live"]
        assert store.gc_staging(0) == 1
        assert [p.name for p in layout.staging_dir.iterdir()] == ["live"]
    finally:
        os.close(fd)
    assert store.gc_staging(0) == 1 and not any(layout.staging_dir.iterdir())
    assert store.verify(REF, deep=True) == []
    with pytest.raises(UsageError):
        store.gc_staging(-1)


def test_exdev_falls_back_to_copy(store: ArtifactStore, tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a different filesystem than tmp_path")
    upper = shm / f"runner-test-{os.getpid()}"
    try:
        make_hf_cache(upper, blobs=10)
        published = store.publish_tree(REF.kind, REF.name, lower=None, upper=upper, run_id=None)
    finally:
        shutil.rmtree(upper, ignore_errors=True)
    assert published.stats.linked == 0 and published.stats.copied == 13
    assert store.verify(REF, deep=True) == []


def test_setuid_is_accepted_with_the_bit_stripped(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    tool = source / "tool"
    tool.write_bytes(b"\x7fELF")
    tool.chmod(0o4755)
    (source / "d").chmod(0o2775)
    version = store.publish_copy(REF.kind, REF.name, source).version
    assert stat.S_IMODE((version.files_dir / "tool").lstat().st_mode) == 0o755
    assert stat.S_IMODE((version.files_dir / "d").lstat().st_mode) == 0o775
    assert stat.S_IMODE(tool.lstat().st_mode) == 0o4755  # the user's file is untouched
    assert version.manifest.entries["tool"].mode == 0o755


# Hostile source trees (built by _build_hostile) and the relpath each refusal must name.
HOSTILE = {
    "absolute": "abs",
    "escape": "up",
    "chain": "a",
    "through-link": "s/l",
    "loop": "x",
    "fifo": "pipe",
    "chardev": "null",
    "socket": "sock",
}


def _build_hostile(case: str, source: Path) -> None:
    source.mkdir()
    (source / "ok.txt").write_text("fine")
    if case == "absolute":
        (source / "abs").symlink_to("/etc/passwd")
    elif case == "escape":
        (source / "up").symlink_to("../outside")
    elif case == "chain":
        (source / "a").symlink_to("b")
        (source / "b").symlink_to("../../..")
    elif case == "through-link":
        (source / "s").mkdir()
        (source / "s" / "d").symlink_to("..")  # the root itself: fine on its own
        (source / "s" / "l").symlink_to("d/../../etc")  # lexically s/etc; really ../etc
    elif case == "loop":
        (source / "x").symlink_to("y")
        (source / "y").symlink_to("x")
    elif case == "fifo":
        os.mkfifo(source / "pipe")
    elif case == "chardev":
        os.mknod(source / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif case == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(source / "sock"))
        sock.close()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_source_trees_are_refused_by_name(store: ArtifactStore, tmp_path: Path, case: str) -> None:
    source = tmp_path / "src"
    _build_hostile(case, source)
    with pytest.raises(UnsafeEntryError) as info:
        store.publish_copy(REF.kind, REF.name, source)
    assert info.value.path == HOSTILE[case]
    assert repr(info.value.path) in str(info.value)
    assert isinstance(info.value, PolicyError)
    assert store.resolve(REF) is None
    assert not store.root.exists()  # refused before anything was created
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_version_dir_with_foreign_manifest_is_corrupt(store: ArtifactStore, seeded: Path) -> None:
    layout = store.layout(REF.kind, REF.name)
    manifest = layout.version_dir(1) / "MANIFEST.json"
    document = json.loads(manifest.read_text())
    document["version"] = 7
    manifest.write_text(json.dumps(document))
    with pytest.raises(ArtifactCorruptError, match="describes"):
        store.resolve(REF)
