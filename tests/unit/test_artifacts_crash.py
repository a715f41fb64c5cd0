"""Crash consistency (R11) and concurrent exporters (R12) with real processes and real SIGKILL.

Children run the real publish code in a fresh interpreter; the fault hook in runner.faults
SIGKILLs them at named checkpoints, or the test kills them after a random delay. Afterwards the
store must hold: LATEST absent or naming a version that verifies deeply, every earlier version
intact, and nothing left in .staging once gc_staging(0) ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.artifacts import ArtifactRef, ArtifactStore, ContentManifest, FileHasher
from runner.artifacts.latest import advance_latest, read_latest
from runner.artifacts.layout import LATEST_TMP_PREFIX
from runner.artifacts.publish import rename_into_place, staging_area
from runner.artifacts.staging import build_files, plan_walk
from runner.faults import CHECKPOINTS

REPO = Path(__file__).resolve().parents[2]
REF = ArtifactRef("artifact", "acme/proj/hf-cache")
EXPORT_CHECKPOINTS = sorted(
    c
    for c in CHECKPOINTS
    if c.startswith(("during_export", "after_stage", "before_version", "after_version")) or "latest" in c
)

CHILD = r"""
import json, sys, time
from pathlib import Path
from runner.artifacts import ArtifactRef, ArtifactStore, ContentManifest, FileHasher

mode, root, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
store = ArtifactStore(root)
ref = ArtifactRef("artifact", name)
if mode == "reader":
    stop, reads, bad = Path(sys.argv[4]), 0, []
    while not stop.exists():
        version = store.resolve(ref)
        problems = store.verify(version.ref) if version is not None else ["nothing resolved"]
        reads += 1
        bad += [f"v{version and version.number}: {p}" for p in problems]
    print(json.dumps({"reads": reads, "bad": bad[:5]}))
    sys.exit(0)
source = Path(sys.argv[4])
go = Path(sys.argv[5]) if len(sys.argv) > 5 else None
print("ready", flush=True)
while go is not None and not go.exists():
    time.sleep(0.001)
if mode == "tree":
    published = store.publish_tree("artifact", name, lower=store.resolve(ref), upper=source, run_id="child")
else:
    published = store.publish_copy("artifact", name, source, run_id="child")
print(published.number, flush=True)
"""


def make_hf_cache(base: Path, blobs: int) -> Path:
    repo = base / "hub" / "models--acme--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / "c1").mkdir(parents=True)
    for i in range(blobs):
        data = f"blob {i}\n".encode() * 8
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        (repo / "snapshots" / "c1" / f"f{i}").symlink_to(f"../../blobs/{digest}")
    return base


def spawn(
    store: ArtifactStore, mode: str, source: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(store.root), REF.name, str(source), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )


def wait_ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"


def assert_consistent(store: ArtifactStore, deeply_verified: set[int] | None = None) -> list[int]:
    """The R11 oracle. Returns the complete version numbers.

    Every complete version is verified; deeply (rehashing) unless it is in `deeply_verified`,
    which is updated: versions are immutable, so later checks of it only need sizes and types.
    """
    layout = store.layout(REF.kind, REF.name)
    complete = [v.number for v in store.versions(REF.kind, REF.name)]
    done = deeply_verified if deeply_verified is not None else set()
    for number in complete:
        deep = number not in done
        assert store.verify(REF.pinned(number), deep=deep) == [], f"version {number} does not verify"
        done.add(number)
    latest = read_latest(layout)
    assert latest is None or latest in complete, f"LATEST={latest} but complete versions are {complete}"
    if layout.latest_path.exists():
        assert layout.latest_path.read_text() == f"{latest:06d}\n"
    resolved = store.resolve(REF)
    assert (resolved is None) == (not complete)
    return complete


def assert_gc_clears(store: ArtifactStore) -> None:
    layout = store.layout(REF.kind, REF.name)
    store.gc_staging(0)
    assert not layout.staging_dir.exists() or not any(layout.staging_dir.iterdir())
    assert not list(layout.dir.glob(f"{LATEST_TMP_PREFIX}*"))


@pytest.mark.parametrize("first", [True, False], ids=["first-version", "next-version"])
@pytest.mark.parametrize("point", EXPORT_CHECKPOINTS)
def test_kill_at_each_export_checkpoint(tmp_path: Path, point: str, first: bool) -> None:
    assert len(EXPORT_CHECKPOINTS) == 6
    store = ArtifactStore(tmp_path / "store")
    source = make_hf_cache(tmp_path / "src", blobs=200)
    if not first:
        store.publish_copy(REF.kind, REF.name, source)
        (source / "hub" / "new-file").write_text("changed after v1\n")
    child = spawn(store, "tree", source, env={"RUNNER_FAULT_POINT": point})
    wait_ready(child)
    assert child.wait(timeout=60) == -signal.SIGKILL
    complete = assert_consistent(store)
    layout = store.layout(REF.kind, REF.name)
    renamed = point in ("after_version_rename", "before_latest_replace", "after_latest_replace")
    assert complete == ([] if first else [1]) + ([1 if first else 2] if renamed else [])
    latest_moved = point == "after_latest_replace"
    assert read_latest(layout) == (complete[-1] if latest_moved else (None if first else 1))
    if point in ("during_export_stream", "after_stage_fsync", "before_version_rename"):
        assert any(layout.staging_dir.iterdir())  # the kill really landed mid-publish
    if point == "before_latest_replace":
        assert list(layout.dir.glob(f"{LATEST_TMP_PREFIX}*"))
    assert_gc_clears(store)
    after = store.publish_tree(REF.kind, REF.name, lower=store.resolve(REF), upper=source, run_id=None)
    assert after.number == max(complete, default=0) + 1 and after.latest_moved
    assert_consistent(store)


@pytest.mark.slow
def test_random_kills_during_a_large_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine's export path: lower = a 3,000-entry version, upper = what a run changed."""
    store = ArtifactStore(tmp_path / "store")
    store.publish_copy(REF.kind, REF.name, make_hf_cache(tmp_path / "src", blobs=1500))
    upper = make_hf_cache(tmp_path / "upper", blobs=50)  # new blobs and links merged into hub/
    (upper / "extra.txt").write_text("run output\n")
    for _ in range(2):  # the second, warm run is what the killed runs look like
        baseline = spawn(store, "tree", upper)
        wait_ready(baseline)
        started = time.perf_counter()
        assert baseline.wait(timeout=120) == 0
        duration = time.perf_counter() - started
    verified: set[int] = set()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    outcomes = []
    for _ in range(10):
        child = spawn(store, "tree", upper)
        wait_ready(child)
        delay = rng.uniform(0, duration)
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
        code = child.wait(timeout=60)
        outcomes.append(("killed" if code == -signal.SIGKILL else f"exit {code}", round(delay, 3)))
        assert code in (0, -signal.SIGKILL)
        assert_consistent(store, verified)
    assert_gc_clears(store)
    complete = assert_consistent(store)
    assert complete[:3] == [1, 2, 3]
    killed = sum(1 for outcome, _ in outcomes if outcome == "killed")
    with capsys.disabled():
        print(
            f"\n[random kills] seed={seed} export of 3,103 entries takes {duration:.3f}s; "
            f"{killed}/10 killed: {outcomes}"
        )
    assert killed >= 1  # otherwise the delays never landed inside a publish


@pytest.mark.slow
def test_concurrent_exporters_and_a_reader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ArtifactStore(tmp_path / "store")
    source = make_hf_cache(tmp_path / "src", blobs=200)
    store.publish_copy(REF.kind, REF.name, source)
    stop = tmp_path / "stop"
    reader = spawn(store, "reader", stop)
    numbers: list[int] = [1]
    for round_no in range(10):
        go = tmp_path / f"go-{round_no}"
        # Even rounds: two identical exports, so both reach the version rename together.
        modes = ["tree", "tree"] if round_no % 2 == 0 else ["copy", "tree"]
        children = [spawn(store, mode, source, str(go)) for mode in modes]
        for child in children:
            wait_ready(child)
        go.touch()  # both start publishing at the same instant
        published = []
        for child in children:
            out, _ = child.communicate(timeout=120)
            assert child.returncode == 0
            published.append(int(out.strip()))
        assert len(set(published)) == 2, f"round {round_no}: both got {published}"
        numbers += published
        layout = store.layout(REF.kind, REF.name)
        assert read_latest(layout) == max(numbers)  # never moved backwards by the slower one
    stop.touch()
    out, _ = reader.communicate(timeout=60)
    result = json.loads(out)
    assert result["bad"] == []
    assert result["reads"] >= 10
    assert sorted(numbers) == list(range(1, 22))
    assert assert_consistent(store) == list(range(1, 22))
    with capsys.disabled():
        print(
            f"\n[concurrency] 10 rounds x 2 exporters -> versions 2..21; reader resolved {result['reads']} times, 0 bad"
        )


def test_latest_never_moves_backwards(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    source = make_hf_cache(tmp_path / "src", blobs=3)
    store.publish_copy(REF.kind, REF.name, source)
    store.publish_copy(REF.kind, REF.name, source)
    layout = store.layout(REF.kind, REF.name)
    assert advance_latest(layout, 1) is False  # a slow exporter of version 1 finishing last
    assert read_latest(layout) == 2
    assert store.publish_copy(REF.kind, REF.name, source).latest_moved
    assert read_latest(layout) == 3


def test_rename_moves_past_numbers_taken_meanwhile(tmp_path: Path) -> None:
    """The allocation retry, deterministically: our candidate number was taken after we chose it."""
    store = ArtifactStore(tmp_path / "store")
    source = make_hf_cache(tmp_path / "src", blobs=5)
    for _ in range(2):
        store.publish_copy(REF.kind, REF.name, source)
    layout = store.layout(REF.kind, REF.name)
    with staging_area(layout) as staging:
        entries, _ = build_files(plan_walk(source, linkable=False), staging / "files", FileHasher())
        stale = ContentManifest(REF.kind, REF.name, 1, "2025-01-01T00:00:00Z", "slow-exporter", entries)
        (staging / "MANIFEST.json").write_bytes(stale.to_bytes())
        assert rename_into_place(layout, staging, stale) == 3
    version = store.resolve(REF.pinned(3))
    assert version is not None and version.manifest.version == 3
    assert version.manifest.source_run_id == "slow-exporter"
    assert assert_consistent(store) == [1, 2, 3]
