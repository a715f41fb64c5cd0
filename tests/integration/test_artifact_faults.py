"""Crash consistency (R11, R10) and concurrent exporters (R12) of artifact exports, on the real engine.

Faults: `RUNNER_FAULT_POINT=<checkpoint>` is armed in the environment of the `runner terminate`
(or of the `runner list` that finalizes a run which ended on its own); the process must die by
SIGKILL there. Then the next `runner list` resumes the finalizer (its owner is dead) and
`runner gc --grace 0` clears leftovers. Afterwards: LATEST is absent or names a version that
deep-verifies, earlier versions are intact, no staging is left, the run is terminal with its export
published or reported, and nothing of the run remains in the engine. For the terminate
checkpoints, a second `runner terminate` exits 0 and leaves the run `terminated` with an exit code.

Concurrency: two runs importing and exporting one artifact are ended at the same moment by two
`runner terminate` processes (or both exit and two `runner list` race to finalize them) while a
third run imports the artifact: distinct complete versions (or a clean refusal), LATEST = the
highest, and the importer sees exactly one complete version.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from artifact_support import (
    RunnerCli,
    complete_versions,
    latest_number,
    listing_command,
    make_cli,
    manifest_of,
    parse_listing,
    snapshot_tree,
    staging_leftovers,
    tree_from_manifest,
    version_dir,
    write_manifest,
)

EXPORT_POINTS = (
    "during_export_stream",
    "after_stage_fsync",
    "before_version_rename",
    "after_version_rename",
    "before_latest_replace",
    "after_latest_replace",
)
TERMINATE_POINTS = ("terminate_after_mark", "terminate_after_stop", "terminate_after_logs", "terminate_after_remove")
# where a dead publisher leaves a private staging dir or a LATEST.tmp file for `gc` to collect
LEAVES_LEFTOVERS = ("during_export_stream", "after_stage_fsync", "before_version_rename", "before_latest_replace")
# (checkpoint, which command carries it)
FAULT_CASES = (
    [pytest.param(point, "terminate", id=f"{point}-terminate") for point in EXPORT_POINTS]
    + [pytest.param(point, "list", id=f"{point}-list") for point in EXPORT_POINTS]
    + [pytest.param(point, "terminate", id=f"{point}-terminate") for point in TERMINATE_POINTS]
    + [pytest.param(point, "list", id=f"{point}-list") for point in ("terminate_after_logs", "terminate_after_remove")]
)


@pytest.fixture
def cli(runner_home: Path, docker_client: docker.DockerClient, busybox_image: str) -> Iterator[RunnerCli]:
    yield from make_cli(runner_home, docker_client)


def seed(cli: RunnerCli, tmp_path: Path, name: str) -> dict[str, tuple[str, int, str]]:
    """Version 1 of `name`: a few files, a nested dir and HF-style relative links."""
    source = tmp_path / f"seed-{name}"
    (source / "blobs").mkdir(parents=True)
    (source / "snapshots" / "c0").mkdir(parents=True)
    for i in range(20):
        (source / "blobs" / f"b{i}").write_text(f"blob {i}\n" * (i + 1))
        (source / "snapshots" / "c0" / f"f{i}").symlink_to(f"../../blobs/b{i}")
    (source / "keep.txt").write_text("keep\n")
    cli("artifact", "import", str(source), name)
    return snapshot_tree(source)


def assert_store_consistent(cli: RunnerCli, name: str, v1_tree: dict[str, tuple[str, int, str]]) -> None:
    """LATEST absent or deep-verifiable; v1 intact; every complete version verifies; no staging."""
    home = cli.home
    latest = latest_number(home, name)
    versions = complete_versions(home, name)
    assert latest is None or latest in versions, (latest, versions)
    assert snapshot_tree(version_dir(home, name, 1) / "files") == v1_tree
    shown = cli.json("artifact", "show", name, "--verify")  # deep: rehashes every file of every version
    assert [v["version"] for v in shown["versions"]] == versions
    assert all(v["problems"] == [] for v in shown["versions"]), shown
    assert shown["latest"] == (latest if latest is not None else max(versions))
    assert staging_leftovers(home) == []


# --------------------------------------------------------------------------- kill -9 at checkpoints


@pytest.mark.parametrize(("point", "via"), FAULT_CASES)
def test_kill_at_checkpoint_never_corrupts(cli: RunnerCli, tmp_path: Path, point: str, via: str) -> None:
    v1_tree = seed(cli, tmp_path, "ckpt")
    io = {"/cache": "artifact://ckpt"}
    tail = "echo READY; exec sleep 300" if via == "terminate" else "true"
    manifest = write_manifest(tmp_path / "m.yaml", name="fault", imports=io, exports=io,
                              run=f"echo new > /cache/new.txt && echo changed > /cache/blobs/b3 && "
                                  f"ln -s ../../blobs/b1 /cache/snapshots/c0/alias && {tail}")
    run_id, _ = cli.create(manifest)
    fault = {"RUNNER_FAULT_POINT": point}
    if via == "terminate":
        cli.wait_log(run_id, "READY")
        killed = cli("terminate", run_id, "--grace", "5", env=fault, ok=False)
    else:
        cli.wait_container_exited(run_id)
        killed = cli("list", env=fault, ok=False)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    assert cli.status_in_db(run_id) == "stopping"  # the stopping status covers the exports

    if point in TERMINATE_POINTS and via == "terminate":
        again = cli.json("terminate", run_id, "--grace", "5")  # R10: a repeated terminate finishes the job
        assert again[0]["status"] == "terminated", again
        assert again[0]["exit_code"] is not None, again
    cli("list")  # resumes the finalizer of the killed process
    described = cli.wait_ended(run_id)
    if point in LEAVES_LEFTOVERS:
        assert staging_leftovers(cli.home), "the killed publisher's private staging should still be there"
        cli("gc")  # younger than the default grace: a publish might still be live, so it stays
        assert staging_leftovers(cli.home)
    cli("gc", "--grace", "0")

    expected_status = "terminated" if via == "terminate" else "completed"
    assert described["status"] == expected_status, described
    assert described["exit_code"] is not None, described
    # the export is either published (a complete version carrying the run's changes) or reported
    published = [n for n in complete_versions(cli.home, "ckpt") if n > 1
                 and "new.txt" in manifest_of(cli.home, "ckpt", n)["entries"]]
    exports = described["exports"] or []
    reported = [e for e in exports if e.get("error")]
    assert published or reported, (described, complete_versions(cli.home, "ckpt"))
    if not reported:  # the run names the version it produced, and that version holds its changes
        assert [e["version"] for e in exports] == [max(published)], (exports, published)
    for number in published:
        entries = manifest_of(cli.home, "ckpt", number)["entries"]
        assert entries["snapshots/c0/alias"]["target"] == "../../blobs/b1"
        assert manifest_of(cli.home, "ckpt", number)["source_run_id"] == run_id
    assert_store_consistent(cli, "ckpt", v1_tree)
    if latest_number(cli.home, "ckpt") is not None:
        assert latest_number(cli.home, "ckpt") == max(complete_versions(cli.home, "ckpt"))
    assert cli.engine_leftovers() == []
    assert not (cli.home / "runs" / run_id / "volumes").exists()


# --------------------------------------------------------------------------- concurrent exporters


def _terminal_exports(cli: RunnerCli, run_id: str) -> list[int]:
    described = cli.wait_ended(run_id)
    versions = []
    for export in described["exports"]:
        if export["error"]:
            assert "version" in export  # a refusal is reported, never silent
        else:
            versions.append(int(export["version"]))
    return versions


def test_parallel_terminates_export_distinct_versions(cli: RunnerCli, tmp_path: Path) -> None:
    v1_tree = seed(cli, tmp_path, "shared")
    io = {"/cache": "artifact://shared"}
    produced: list[int] = []
    for round_no in range(3):
        runs = []
        for who in ("a", "b"):
            manifest = write_manifest(tmp_path / f"{who}{round_no}.yaml", name=f"writer-{who}{round_no}",
                                      imports=io, exports=io,
                                      run=f"echo {who}{round_no} > /cache/{who}.txt && echo READY && exec sleep 300")
            runs.append(cli.create(manifest)[0])
        for run_id in runs:
            cli.wait_log(run_id, "READY")
        terminators = [cli.popen("terminate", run_id, "--grace", "5") for run_id in runs]
        # a third run imports the artifact while both exports are in flight
        reader = write_manifest(tmp_path / f"reader{round_no}.yaml", name=f"reader{round_no}",
                                imports={"/cache": "artifact://shared"}, run=listing_command("/cache"))
        reader_id, _ = cli.create(reader)
        for proc in terminators:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (out, err)
        round_versions = []
        for who, run_id in zip(("a", "b"), runs, strict=True):
            for number in _terminal_exports(cli, run_id):
                # each version is its writer's complete view: its own file, as written
                entry = manifest_of(cli.home, "shared", number)["entries"][f"{who}.txt"]
                assert entry["sha256"] == hashlib.sha256(f"{who}{round_no}\n".encode()).hexdigest()
                assert manifest_of(cli.home, "shared", number)["source_run_id"] == run_id
                round_versions.append(number)
        assert len(set(round_versions)) == len(round_versions), round_versions  # distinct versions
        assert len(round_versions) >= 1
        produced += round_versions

        # the reader saw exactly one complete version: the one it recorded
        read = cli.wait_ended(reader_id)
        assert read["status"] == "completed", read
        seen_version = read["imports"][0]["version"]
        assert seen_version in complete_versions(cli.home, "shared")
        assert parse_listing(cli.logs(reader_id)) == tree_from_manifest(manifest_of(cli.home, "shared", seen_version))

    versions = complete_versions(cli.home, "shared")
    assert sorted(produced) == versions[1:]
    assert latest_number(cli.home, "shared") == max(versions)
    cli("gc", "--grace", "0")
    assert_store_consistent(cli, "shared", v1_tree)
    assert cli.engine_leftovers() == []


def test_racing_lists_finalize_each_run_once(cli: RunnerCli, tmp_path: Path) -> None:
    v1_tree = seed(cli, tmp_path, "raced")
    io = {"/cache": "artifact://raced"}
    runs = []
    for who in ("a", "b"):
        manifest = write_manifest(tmp_path / f"{who}.yaml", name=f"finisher-{who}", imports=io, exports=io,
                                  run=f"echo {who} > /cache/{who}.txt")
        runs.append(cli.create(manifest)[0])
    for run_id in runs:
        cli.wait_container_exited(run_id)
    listers = [cli.popen("list") for _ in range(3)]
    for proc in listers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)
    produced = [v for run_id in runs for v in _terminal_exports(cli, run_id)]
    assert sorted(produced) == [2, 3]  # one export per run, however many finalizers raced
    assert complete_versions(cli.home, "raced") == [1, 2, 3]
    assert latest_number(cli.home, "raced") == 3
    for run_id, number in zip(runs, [e for r in runs for e in _terminal_exports(cli, r)], strict=True):
        assert manifest_of(cli.home, "raced", number)["source_run_id"] == run_id
    assert_store_consistent(cli, "raced", v1_tree)
    assert cli.engine_leftovers() == []


def test_fault_points_cover_every_export_and_terminate_checkpoint() -> None:
    """Guard: the checkpoints exercised above are exactly the export/terminate ones the code declares."""
    from runner.faults import CHECKPOINTS

    assert set(EXPORT_POINTS) | set(TERMINATE_POINTS) <= CHECKPOINTS
    create_points = {"after_intent_insert", "after_imports", "before_container_create", "after_container_create",
                     "after_put_files", "after_start", "before_state_update"}
    assert CHECKPOINTS - create_points == set(EXPORT_POINTS) | set(TERMINATE_POINTS)


@pytest.mark.parametrize("delay_ms", [5, 150, 350, 3000])
def test_kill_at_a_delay_inside_the_export(cli: RunnerCli, tmp_path: Path, delay_ms: int) -> None:
    """RUNNER_FAULT_AFTER_MS lands the SIGKILL somewhere inside (or after) a larger export."""
    v1_tree = seed(cli, tmp_path, "delayed")
    io = {"/cache": "artifact://delayed"}
    manifest = write_manifest(tmp_path / "m.yaml", name="delayed", imports=io, exports=io,
                              run="mkdir -p /cache/many && cd /cache/many && "
                                  "for i in $(seq 1 800); do echo $i > f$i; done && ln -s ../keep.txt keep-link")
    run_id, _ = cli.create(manifest)
    cli.wait_container_exited(run_id, timeout=120)
    killed = cli("list", env={"RUNNER_FAULT_POINT": "during_export_stream", "RUNNER_FAULT_AFTER_MS": str(delay_ms)},
                 ok=False)
    assert killed.returncode in (0, -signal.SIGKILL), (killed.returncode, killed.stderr)
    cli("list")
    described = cli.wait_ended(run_id)
    cli("gc", "--grace", "0")
    assert described["status"] == "completed", described
    assert described["exports"][0]["error"] is None and described["exports"][0]["version"] >= 2, described
    number = described["exports"][0]["version"]
    entries = manifest_of(cli.home, "delayed", number)["entries"]
    assert len([p for p in entries if p.startswith("many/f")]) == 800
    assert entries["many/keep-link"]["target"] == "../keep.txt"
    assert_store_consistent(cli, "delayed", v1_tree)
    assert latest_number(cli.home, "delayed") == max(complete_versions(cli.home, "delayed"))
    assert cli.engine_leftovers() == []
