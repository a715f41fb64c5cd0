"""safe_extract against hostile tar streams (reliability S9) and real ones from GNU tar over a pipe."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from runner.artifacts import ArchiveLimitError, UnsafeEntryError, safe_extract
from runner.errors import PolicyError

CAPS = {"max_members": 1000, "max_bytes": 1 << 20}


def member(
    name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"", link: str = "", mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    return info, data


def archive(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    """An in-memory (seekable) tar: safe_extract validates all headers before writing anything."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    buffer.seek(0)
    return buffer


# name → (members, the member name the refusal must mention)
HOSTILE = {
    "dotdot": ([member("ok"), member("../evil", data=b"x")], "../evil"),
    "dotdot-inner": ([member("a/../../evil", data=b"x")], "a/../../evil"),
    "absolute": ([member("/tmp/evil", data=b"x")], "/tmp/evil"),
    "symlink-absolute": ([member("l", tarfile.SYMTYPE, link="/etc/passwd")], "l"),
    "symlink-escape": (
        [member("d", tarfile.DIRTYPE, mode=0o755), member("d/a", tarfile.SYMTYPE, link="../../x")],
        "d/a",
    ),
    "chain": ([member("a", tarfile.SYMTYPE, link="b"), member("b", tarfile.SYMTYPE, link="../../..")], "b"),
    "chain-through-link": (
        [
            member("s", tarfile.DIRTYPE, mode=0o755),
            member("s/d", tarfile.SYMTYPE, link=".."),
            member("s/l", tarfile.SYMTYPE, link="d/../../etc/passwd"),
        ],
        "s/l",
    ),
    "through-symlink": ([member("l", tarfile.SYMTYPE, link="sub"), member("l/f", data=b"x")], "l/f"),
    "hardlink": ([member("f", data=b"x"), member("h", tarfile.LNKTYPE, link="f")], "h"),
    "chardev": ([member("null", tarfile.CHRTYPE)], "null"),
    "blockdev": ([member("sda", tarfile.BLKTYPE)], "sda"),
    "fifo": ([member("pipe", tarfile.FIFOTYPE)], "pipe"),
    "duplicate": ([member("f", data=b"1"), member("f", data=b"2")], "f"),
    "loop": ([member("x", tarfile.SYMTYPE, link="y"), member("y", tarfile.SYMTYPE, link="x")], "x"),
}


def piped(buffer: io.BytesIO, tmp_path: Path) -> subprocess.Popen[bytes]:
    """The same bytes from a real process over a pipe: the non-seekable, validate-as-you-go path."""
    path = tmp_path / f"in-{time.monotonic_ns()}.tar"
    path.write_bytes(buffer.getvalue())
    return subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)


@pytest.mark.parametrize("source", ["seekable", "pipe"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_by_name(tmp_path: Path, case: str, source: str) -> None:
    members, named = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "dest"
    stream = archive(*members)
    before = sorted(os.listdir(work)), sorted(os.listdir(tmp_path.parent))
    with pytest.raises(UnsafeEntryError) as info:
        if source == "pipe":
            feeder = piped(stream, tmp_path)
            assert feeder.stdout is not None
            with feeder:
                safe_extract(feeder.stdout, dest, **CAPS)
        else:
            safe_extract(stream, dest, **CAPS)
    assert info.value.path == named and repr(named) in str(info.value)
    assert isinstance(info.value, PolicyError)
    assert not dest.exists()  # created by the call, so removed on refusal
    assert (sorted(os.listdir(work)), sorted(os.listdir(tmp_path.parent))) == before
    assert not Path("/tmp/evil").exists()


def test_setuid_member_is_accepted_with_the_bit_stripped(tmp_path: Path) -> None:
    summary = safe_extract(archive(member("bin/tool", data=b"\x7fELF", mode=0o4755)), tmp_path / "d", **CAPS)
    assert summary.members == 1 and summary.bytes == 4
    assert stat.S_IMODE((tmp_path / "d/bin/tool").stat().st_mode) == 0o755


@pytest.mark.slow
def test_member_cap_refuses_a_100k_member_tar_early(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "many.tar"
    with path.open("wb") as out:
        for i in range(100_000):
            out.write(tarfile.TarInfo(f"f{i}").tobuf(tarfile.USTAR_FORMAT))
        out.write(b"\0" * 1024)
    timings = {}
    # Seekable: headers only, nothing written. Pipe: extracted while validated, so its cost follows
    # the cap (kept lower here), and everything written is removed on refusal.
    for source, cap in (("seekable", 10_000), ("pipe", 2_000)):
        started = time.perf_counter()
        with pytest.raises(ArchiveLimitError, match=f"more than {cap} members"):
            if source == "pipe":
                with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as feeder:
                    assert feeder.stdout is not None
                    safe_extract(feeder.stdout, tmp_path / "dest", max_members=cap, max_bytes=1 << 30)
                    feeder.kill()  # we stopped reading: do not wait for cat to finish writing
            else:
                with path.open("rb") as stream:
                    safe_extract(stream, tmp_path / "dest", max_members=cap, max_bytes=1 << 30)
        timings[source] = time.perf_counter() - started
        assert not (tmp_path / "dest").exists()
    with capsys.disabled():
        print(
            f"\n[timing] 100,000-member tar refused: seekable at member 10,001 (headers only) "
            f"{timings['seekable']:.3f}s; pipe at member 2,001 (extract, then clean up) {timings['pipe']:.3f}s"
        )


def test_size_cap_counts_across_members(tmp_path: Path) -> None:
    chunk = b"x" * (600 << 10)
    with pytest.raises(ArchiveLimitError, match="exceeds 1048576 bytes at member 'second'"):
        safe_extract(archive(member("first", data=chunk), member("second", data=chunk)), tmp_path / "d", **CAPS)
    assert not (tmp_path / "d").exists()


def test_a_10gib_member_is_refused_on_its_header(tmp_path: Path) -> None:
    huge = tarfile.TarInfo("huge.bin")
    huge.size = 10 << 30
    # Only the header and a little data: the refusal must not need the 10 GiB behind it.
    stream = io.BytesIO(huge.tobuf(tarfile.PAX_FORMAT) + b"\0" * 4096)
    with pytest.raises(ArchiveLimitError, match=r"huge\.bin"):
        safe_extract(stream, tmp_path / "d", **CAPS)


def test_dest_must_be_absent_or_empty_and_is_kept_empty(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "mine").write_text("x")
    with pytest.raises(UnsafeEntryError, match="empty"):
        safe_extract(archive(member("f")), dest, **CAPS)
    (dest / "mine").unlink()
    with pytest.raises(UnsafeEntryError):
        safe_extract(archive(member("a", data=b"1"), member("../b")), dest, **CAPS)
    assert dest.is_dir() and not any(dest.iterdir())  # pre-existing dest kept, but emptied


@pytest.mark.parametrize("source", ["seekable", "pipe"])
def test_truncated_stream_is_an_error_not_a_crash(tmp_path: Path, source: str) -> None:
    truncated = io.BytesIO(archive(member("f", data=b"x" * 5000)).getvalue()[:1500])
    with pytest.raises(UnsafeEntryError, match="unreadable tar stream"):
        if source == "pipe":
            with piped(truncated, tmp_path) as feeder:
                assert feeder.stdout is not None
                safe_extract(feeder.stdout, tmp_path / "d", **CAPS)
        else:
            safe_extract(truncated, tmp_path / "d", **CAPS)
    assert not (tmp_path / "d").exists()


def test_hf_cache_from_gnu_tar_over_a_pipe(tmp_path: Path) -> None:
    """A real tar process, gzip, a non-seekable pipe, `./` names: HF relative links come out intact."""
    source = tmp_path / "src"
    repo = source / "hub" / "models--acme--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / "c1" / "sub").mkdir(parents=True)
    expected: dict[str, str] = {}
    for i in range(50):
        data = f"weights {i}".encode()
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        rel = f"snapshots/c1/{'sub/' if i % 2 else ''}w{i}"
        target = ("../" * (rel.count("/") - 1 + 1)) + f"blobs/{digest}"
        (repo / rel).symlink_to(target)
        expected[f"hub/models--acme--tiny/{rel}"] = target
    tar = subprocess.Popen(["tar", "-C", str(source), "-czf", "-", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    summary = safe_extract(tar.stdout, tmp_path / "out", **CAPS)
    assert tar.wait() == 0
    out = tmp_path / "out"
    assert {rel: os.readlink(out / rel) for rel in expected} == expected
    assert all((out / rel).read_bytes() == (source / rel).read_bytes() for rel in expected)
    assert summary.bytes == sum(len(f"weights {i}") for i in range(50))


def test_second_layer_is_available_here() -> None:
    # PEP 706 filters exist from 3.11.4 / 3.12; the 3.10 fallback is for old interpreters only.
    assert hasattr(tarfile, "data_filter")
