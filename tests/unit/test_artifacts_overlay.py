"""publish_tree: lower version + overlay upper → new version, by hardlinks and reused hashes.

Upper dirs are built the way the kernel builds them (0:0 character-device whiteouts, opaque
xattrs), and one test lets a real overlayfs mount produce the upper dir.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from runner.artifacts import (
    ArtifactCorruptError,
    ArtifactRef,
    ArtifactStore,
    FileHasher,
    OverlayMetadataError,
    UnsafeEntryError,
    VersionHandle,
    merge_trees,
)

SRC = ArtifactRef("artifact", "acme/proj/cache")


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """relpath → (type, permission bits, sha256 or link target) for a whole tree, links not followed."""
    result: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                result[rel] = ("symlink", 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                result[rel] = ("dir", stat.S_IMODE(info.st_mode), "")
            elif not stat.S_ISREG(info.st_mode):
                result[rel] = ("special", stat.S_IMODE(info.st_mode), str(info.st_rdev))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                result[rel] = ("file", stat.S_IMODE(info.st_mode), digest)
    return result


def make_lower_source(base: Path) -> Path:
    """cfg/{a,b}, data/{x,y,z}, gone/{deep/f}, hub/blobs + snapshot links, keep.txt, s/d/, s/l."""
    for sub in ("cfg", "data", "gone/deep", "hub/blobs", "hub/snapshots/c1", "s/d"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for rel in ("cfg/a", "cfg/b", "data/x", "data/y", "data/z", "gone/deep/f", "keep.txt"):
        (base / rel).write_text(f"lower {rel}\n")
    for i in range(20):
        data = f"weights {i}\n".encode() * 100
        digest = hashlib.sha256(data).hexdigest()
        (base / "hub/blobs" / digest).write_bytes(data)
        (base / "hub/snapshots/c1" / f"w{i}.bin").symlink_to(f"../../blobs/{digest}")
    (base / "s/l").symlink_to("d/../../keep.txt")  # s/d is a real dir: resolves to keep.txt
    return base


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store", FileHasher())


@pytest.fixture
def v1(store: ArtifactStore, tmp_path: Path) -> VersionHandle:
    store.publish_copy(SRC.kind, SRC.name, make_lower_source(tmp_path / "lower-src"))
    handle = store.resolve(SRC)
    assert handle is not None
    return handle


def build_upper(upper: Path, opaque_xattr: str = "trusted.overlay.opaque") -> None:
    """What a run did: new file, modified file, deleted file, deleted dir, replaced dir content."""
    (upper / "cfg").mkdir(parents=True)
    (upper / "cfg/a").write_text("modified by the run\n")  # cfg/ is merged with lower cfg/
    whiteout(upper / "cfg/b")
    whiteout(upper / "gone")  # a whole lower directory deleted
    (upper / "data").mkdir()
    os.setxattr(upper / "data", opaque_xattr, b"y")  # rm -r data && mkdir data
    (upper / "data/w").write_text("fresh\n")
    (upper / "new.txt").write_text("new file\n")
    whiteout(upper / "never-in-lower")  # whiteouts of absent paths are harmless


def expected_merge(lower_files: Path, upper: Path) -> dict[str, tuple[str, int, str]]:
    """The merged view, computed by hand from the same operations as build_upper."""
    expected = snapshot(lower_files)
    for rel in ("cfg/b", "data/x", "data/y", "data/z", "gone", "gone/deep", "gone/deep/f"):
        del expected[rel]
    overlay_view = snapshot(upper)
    for rel in ("cfg", "cfg/a", "data", "data/w", "new.txt"):
        expected[rel] = overlay_view[rel]
    return expected


def test_merge_lists_origins(v1: VersionHandle, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    build_upper(upper)
    merged = {e.relpath: e.origin for e in merge_trees(v1.files_dir, upper)}
    assert merged["cfg"] == "upper" and merged["cfg/a"] == "upper" and merged["keep.txt"] == "lower"
    assert "cfg/b" not in merged and "gone" not in merged and "data/x" not in merged
    assert merged["data/w"] == "upper" and "never-in-lower" not in merged


@pytest.mark.parametrize("prefix", ["trusted", "user"])
def test_publish_tree_is_the_merge_by_links_and_reused_hashes(
    store: ArtifactStore, v1: VersionHandle, tmp_path: Path, prefix: str
) -> None:
    upper = tmp_path / "upper"
    build_upper(upper, opaque_xattr=f"{prefix}.overlay.opaque")
    expected = expected_merge(v1.files_dir, upper)
    calls_before = store.hasher.calls
    published = store.publish_tree(SRC.kind, "acme/proj/cache-out", lower=v1, upper=upper, run_id="run-7")
    # Only the three files the run wrote were read; every lower file's hash came from v1's manifest.
    assert store.hasher.calls - calls_before == 3 == published.stats.hashed
    v2 = published.version
    assert snapshot(v2.files_dir) == expected
    assert store.verify(v2.ref, deep=True) == []
    assert store.verify(v1.ref, deep=True) == []  # the imported version is untouched
    lower_files = [rel for rel, e in v2.manifest.entries.items() if e.type == "file" and rel in expected]
    assert published.stats.reused == len(lower_files) - 3 and published.stats.copied == 0
    for rel, entry in v2.manifest.entries.items():
        if entry.type != "file":
            continue
        source = upper / rel if (upper / rel).exists() else v1.files_dir / rel
        assert (v2.files_dir / rel).stat().st_ino == source.stat().st_ino, rel  # metadata-only
    assert v2.manifest.source_run_id == "run-7" and v2.manifest.version == 1


def test_unchanged_export_hashes_nothing(store: ArtifactStore, v1: VersionHandle, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    before = store.hasher.calls
    published = store.publish_tree(SRC.kind, SRC.name, lower=v1, upper=upper, run_id=None)
    assert store.hasher.calls == before and published.number == 2
    assert snapshot(published.version.files_dir) == snapshot(v1.files_dir)


def test_linux67_xattr_whiteout_is_a_whiteout(store: ArtifactStore, v1: VersionHandle, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "keep.txt").write_bytes(b"")
    os.setxattr(upper / "keep.txt", "trusted.overlay.whiteout", b"")
    v2 = store.publish_tree(SRC.kind, SRC.name, lower=v1, upper=upper, run_id=None).version
    assert "keep.txt" not in v2.manifest.entries


@pytest.mark.parametrize(
    ("xattr", "target"),
    [
        ("trusted.overlay.redirect", "cfg"),
        ("user.overlay.redirect", "cfg"),
        ("trusted.overlay.metacopy", "cfg/a"),
        ("user.overlay.metacopy", "cfg/a"),
    ],
)
def test_redirect_and_metacopy_are_refused(
    store: ArtifactStore, v1: VersionHandle, tmp_path: Path, xattr: str, target: str
) -> None:
    upper = tmp_path / "upper"
    build_upper(upper)
    os.setxattr(upper / target, xattr, b"/elsewhere" if "redirect" in xattr else b"")
    with pytest.raises(OverlayMetadataError) as info:
        store.publish_tree(SRC.kind, SRC.name, lower=v1, upper=upper, run_id=None)
    assert info.value.path == target and info.value.xattr == xattr
    assert [v.number for v in store.versions(SRC.kind, SRC.name)] == [1]


@pytest.mark.parametrize("case", ["fifo", "device", "through-link"])
def test_hostile_upper_entries_are_refused(store: ArtifactStore, v1: VersionHandle, tmp_path: Path, case: str) -> None:
    upper = tmp_path / "upper"
    (upper / "s").mkdir(parents=True)
    if case == "fifo":
        os.mkfifo(upper / "s" / "pipe")
        named = "s/pipe"
    elif case == "device":
        os.mknod(upper / "s" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        named = "s/null"
    else:
        # Harmless alone (s/d -> .. is the root), but it turns v1's s/l -> d/../../keep.txt into an escape.
        (upper / "s" / "d").symlink_to("..")
        named = "s/l"
    with pytest.raises(UnsafeEntryError) as info:
        store.publish_tree(SRC.kind, SRC.name, lower=v1, upper=upper, run_id=None)
    assert info.value.path == named
    assert [v.number for v in store.versions(SRC.kind, SRC.name)] == [1]


def test_setuid_upper_file_is_copied_with_bit_stripped(store: ArtifactStore, v1: VersionHandle, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "tool").write_bytes(b"\x7fELF")
    (upper / "tool").chmod(0o4755)
    published = store.publish_tree(SRC.kind, SRC.name, lower=v1, upper=upper, run_id=None)
    tool = published.version.files_dir / "tool"
    assert stat.S_IMODE(tool.lstat().st_mode) == 0o755
    assert tool.stat().st_ino != (upper / "tool").stat().st_ino  # linking would have shared the mode
    assert stat.S_IMODE((upper / "tool").lstat().st_mode) == 0o4755
    assert published.stats.copied == 1


def _mount_overlay(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    options = f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off"
    result = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here (needs root and overlay support): {result.stderr.strip()}")


def test_real_overlayfs_upper_round_trips(store: ArtifactStore, v1: VersionHandle, tmp_path: Path) -> None:
    upper, work, merged = (tmp_path / n for n in ("upper", "work", "merged"))
    for directory in (upper, work, merged):
        directory.mkdir()
    _mount_overlay(v1.files_dir, upper, work, merged)
    try:
        (merged / "cfg/a").write_text("changed through the mount\n")
        (merged / "cfg/b").unlink()
        subprocess.run(["rm", "-rf", str(merged / "gone"), str(merged / "data")], check=True)
        (merged / "data").mkdir()  # recreated over a deleted lower dir: the kernel makes it opaque
        (merged / "data/new").write_text("n\n")
        (merged / "keep.txt").chmod(0o600)  # metadata-only change: full copy-up (metacopy=off)
        (merged / "hub/snapshots/c1/w0.bin").unlink()
        (merged / "hub/snapshots/c1/w0.bin").symlink_to("../../blobs/" + "0" * 64)
        expected = snapshot(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert stat.S_ISCHR((upper / "cfg/b").lstat().st_mode)  # the kernel's whiteout
    published = store.publish_tree(SRC.kind, SRC.name, lower=v1, upper=upper, run_id=None)
    assert snapshot(published.version.files_dir) == expected
    assert store.verify(published.version.ref, deep=True) == []
    assert published.stats.hashed == 3  # cfg/a, data/new, keep.txt
    assert store.verify(v1.ref, deep=True) == []


def _tree(root: Path, files: int, big: bool) -> None:
    """`files` files; big: 8 sparse files of 256 MiB (2 GiB apparent) among them, else 1 MiB total."""
    root.mkdir()
    for i in range(files):
        path = root / f"d{i % 8}" / f"f{i}"
        path.parent.mkdir(exist_ok=True)
        with path.open("wb") as handle:
            if big and i < 8:
                handle.truncate(256 << 20)
            else:
                handle.write(bytes([i % 251]) * ((1 << 20) // files))


@pytest.mark.slow
def test_hash_calls_follow_changed_files_not_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report: dict[str, tuple[int, int, float, float]] = {}
    for label, big in (("2GiB", True), ("1MiB", False)):
        store = ArtifactStore(tmp_path / f"store-{label}", FileHasher())
        seed = tmp_path / f"seed-{label}"
        _tree(seed, 512, big)
        started = time.perf_counter()
        v1 = store.publish_tree("artifact", "cache", lower=None, upper=seed, run_id=None).version
        seeded = time.perf_counter() - started
        upper = tmp_path / f"upper-{label}"
        (upper / "d0").mkdir(parents=True)
        (upper / "d0" / "f0").write_text("replaced\n")  # in the big tree: a 256 MiB sparse file
        (upper / "d1" / "new").parent.mkdir()
        (upper / "d1" / "new").write_text("new\n")
        calls, hashed = store.hasher.calls, store.hasher.bytes
        started = time.perf_counter()
        v2 = store.publish_tree("artifact", "cache", lower=v1, upper=upper, run_id=None)
        exported = time.perf_counter() - started
        report[label] = (store.hasher.calls - calls, store.hasher.bytes - hashed, seeded, exported)
        assert v2.stats.copied == 0 and v2.stats.reused == 511
        assert v1.manifest.totals.bytes >= (2 << 30 if big else 0)
    assert report["2GiB"][:2] == report["1MiB"][:2] == (2, len("replaced\nnew\n"))
    with capsys.disabled():
        for label, (calls, hashed, seeded, exported) in report.items():
            print(
                f"\n[timing] {label} tree, 512 files: seed publish (hashes all) {seeded:.3f}s; "
                f"export of lower+upper {exported:.3f}s with {calls} hash calls / {hashed} bytes hashed"
            )


@pytest.mark.parametrize("damage", ["extra-file", "grown-file", "retargeted-link"])
def test_a_damaged_lower_is_never_carried_forward(
    store: ArtifactStore, v1: VersionHandle, tmp_path: Path, damage: str
) -> None:
    if damage == "extra-file":
        (v1.files_dir / "cfg" / "smuggled").write_text("not in the manifest\n")
    elif damage == "grown-file":
        with (v1.files_dir / "keep.txt").open("a") as handle:
            handle.write("appended behind the store's back\n")
    else:
        link = v1.files_dir / "hub/snapshots/c1/w1.bin"
        link.unlink()
        link.symlink_to("../../blobs/other")
    upper = tmp_path / "upper"
    upper.mkdir()
    with pytest.raises(ArtifactCorruptError, match=r"does not match its manifest|no longer matches"):
        store.publish_tree(SRC.kind, SRC.name, lower=v1, upper=upper, run_id=None)
    assert [v.number for v in store.versions(SRC.kind, SRC.name)] == [1]
