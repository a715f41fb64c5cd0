"""`runner artifact list|show|rm|import|export` through the real binary (and the engine where a run matters).

- list: table and `--json` fields; show: `--json`, `--verify` (deep: a same-size byte flip is caught
  only by rehashing), exit 1 on problems.
- rm: one version (LATEST moves back, numbers never reused), the whole artifact, refused while a
  running run imports it.
- import: a directory becomes a version; a pinned name is refused; host trees with an absolute or
  escaping symlink or a FIFO are refused naming the path, leaving nothing behind (S9 for host dirs;
  the tar cases are in tests/unit/test_artifacts_tarsafe.py).
- export: a copy (not hardlinks) with links and modes kept; the destination must be empty.
- `--kind model|dataset` namespaces.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from artifact_support import (
    RunnerCli,
    artifact_dir,
    complete_versions,
    latest_number,
    make_cli,
    snapshot_tree,
    staging_leftovers,
    version_dir,
    write_manifest,
)


@pytest.fixture
def cli(runner_home: Path, docker_client: docker.DockerClient, busybox_image: str) -> Iterator[RunnerCli]:
    yield from make_cli(runner_home, docker_client)


def make_tree(root: Path, marker: str = "one") -> Path:
    (root / "blobs").mkdir(parents=True)
    (root / "snapshots" / "c1").mkdir(parents=True)
    (root / "blobs" / "aaa").write_text(f"blob {marker}\n")
    (root / "snapshots" / "c1" / "f").symlink_to("../../blobs/aaa")
    (root / "snapshots" / "c1" / "dangling").symlink_to("../../blobs/not-there")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "private").write_text("p\n")
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "private", 0o600)
    return root


def test_list_and_show(cli: RunnerCli, tmp_path: Path) -> None:
    assert cli.json("artifact", "list") == []
    assert "no artifacts" in cli("artifact", "list").stdout
    cli("artifact", "import", str(make_tree(tmp_path / "a")), "team/proj/cache")
    cli("artifact", "import", str(make_tree(tmp_path / "b", "two")), "team/proj/cache")
    cli("artifact", "import", str(make_tree(tmp_path / "m")), "acme/llm", "--kind", "model")

    rows = {(r["kind"], r["name"]): r for r in cli.json("artifact", "list")}
    assert set(rows) == {("artifact", "team/proj/cache"), ("model", "acme/llm")}
    cache = rows[("artifact", "team/proj/cache")]
    assert cache["latest"] == 2 and cache["versions"] == 2
    assert cache["files"] == 3 and cache["bytes"] == len("blob two\n") + len("#!/bin/sh\n") + len("p\n")
    assert cache["created"]
    table = cli("artifact", "list").stdout
    assert table.splitlines()[0].split() == ["KIND", "NAME", "LATEST", "VERSIONS", "FILES", "SIZE", "CREATED"]
    assert "team/proj/cache" in table and "acme/llm" in table

    shown = cli.json("artifact", "show", "team/proj/cache")
    assert shown["kind"] == "artifact" and shown["latest"] == 2
    assert [(v["version"], v["latest"]) for v in shown["versions"]] == [(1, False), (2, True)]
    v1 = shown["versions"][0]
    assert {"created", "source_run_id", "files", "symlinks", "bytes", "path", "problems"} <= set(v1)
    assert v1["symlinks"] == 2 and v1["source_run_id"] is None and v1["problems"] == []
    assert Path(v1["path"]) == version_dir(cli.home, "team/proj/cache", 1) / "files"
    one = cli.json("artifact", "show", "team/proj/cache:1", "--verify")
    assert [v["version"] for v in one["versions"]] == [1]
    text = cli("artifact", "show", "team/proj/cache").stdout
    assert "latest: 2" in text and "2 *" in text
    # a missing artifact or version is a usage error naming it
    assert "nope" in cli("artifact", "show", "nope", ok=2).stderr
    assert cli("artifact", "show", "team/proj/cache:9", ok=2).returncode == 2


def test_show_verify_detects_tampering(cli: RunnerCli, tmp_path: Path) -> None:
    cli("artifact", "import", str(make_tree(tmp_path / "t")), "tampered")
    blob = version_dir(cli.home, "tampered", 1) / "files" / "blobs" / "aaa"
    original = blob.read_bytes()
    os.chmod(blob, 0o644)
    blob.write_bytes(b"X" + original[1:])  # same size: only a deep check can tell
    assert cli.json("artifact", "show", "tampered")["versions"][0]["problems"] == []
    deep = cli("artifact", "show", "tampered", "--verify", "--json", ok=1)
    assert "blobs/aaa: sha256" in deep.stdout
    assert "blobs/aaa" in cli("artifact", "show", "tampered", "--verify", ok=1).stderr
    blob.write_bytes(original + b"more")  # a size change is caught without --verify
    assert cli("artifact", "show", "tampered", ok=1).returncode == 1


def test_rm_version_and_artifact(cli: RunnerCli, tmp_path: Path) -> None:
    for marker in ("one", "two", "three"):
        cli("artifact", "import", str(make_tree(tmp_path / marker, marker)), "gone")
    assert latest_number(cli.home, "gone") == 3
    cli("artifact", "rm", "gone:3")  # the latest: LATEST moves back to 2 first
    assert latest_number(cli.home, "gone") == 2
    assert complete_versions(cli.home, "gone") == [1, 2]
    cli("artifact", "rm", "gone:1")
    assert complete_versions(cli.home, "gone") == [2] and latest_number(cli.home, "gone") == 2
    assert cli("artifact", "rm", "gone:1", ok=2).returncode == 2  # already removed
    again = cli("artifact", "import", str(make_tree(tmp_path / "four", "four")), "gone")
    assert "version 4" in again.stdout  # numbers are never reused
    assert cli.json("artifact", "show", "gone", "--verify")["latest"] == 4

    cli("artifact", "rm", "gone")
    assert cli.json("artifact", "list") == []
    assert not artifact_dir(cli.home, "gone").exists()
    assert cli("artifact", "rm", "gone", ok=2).returncode == 2
    assert staging_leftovers(cli.home) == []


def test_rm_refused_while_a_run_imports_it(cli: RunnerCli, tmp_path: Path) -> None:
    cli("artifact", "import", str(make_tree(tmp_path / "u1")), "in-use")
    cli("artifact", "import", str(make_tree(tmp_path / "u2", "two")), "in-use")
    manifest = write_manifest(tmp_path / "m.yaml", name="holder", imports={"/data": "artifact://in-use"},
                              run="exec sleep 300")
    run_id, _ = cli.create(manifest)
    cli.wait_container_running(run_id)
    refused = cli("artifact", "rm", "in-use", ok=2)
    assert run_id in refused.stderr and "terminate" in refused.stderr
    assert run_id in cli("artifact", "rm", "in-use:2", ok=2).stderr  # the version it reads
    cli("artifact", "rm", "in-use:1")  # a version nobody reads can go
    assert complete_versions(cli.home, "in-use") == [2]
    cli("terminate", run_id, "--grace", "2")
    cli("artifact", "rm", "in-use")
    assert cli.json("artifact", "list") == []
    assert cli.engine_leftovers() == []


def test_import_directory(cli: RunnerCli, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src")
    done = cli("artifact", "import", str(source), "seeded")
    assert "version 1" in done.stdout and "files hashed" in done.stdout
    files = version_dir(cli.home, "seeded", 1) / "files"
    assert snapshot_tree(files) == snapshot_tree(source)
    assert os.readlink(files / "snapshots" / "c1" / "f") == "../../blobs/aaa"
    assert os.readlink(files / "snapshots" / "c1" / "dangling") == "../../blobs/not-there"
    # the store holds a copy: changing the source later changes nothing published
    assert (files / "blobs" / "aaa").stat().st_ino != (source / "blobs" / "aaa").stat().st_ino
    (source / "blobs" / "aaa").write_text("edited\n")
    assert cli.json("artifact", "show", "seeded", "--verify")["versions"][0]["problems"] == []

    pinned = cli("artifact", "import", str(source), "seeded:3", ok=2)
    assert "versions are numbered by the store" in pinned.stderr
    assert cli("artifact", "import", str(source), "../escape", ok=2).returncode == 2
    assert cli("artifact", "import", str(tmp_path / "missing"), "x", ok=2).returncode == 2
    assert complete_versions(cli.home, "seeded") == [1]


@pytest.mark.parametrize(
    ("label", "entry"),
    [
        pytest.param("absolute", "sub/evil", id="absolute-link"),
        pytest.param("escaping", "sub/escape", id="escaping-link"),
        pytest.param("fifo", "sub/pipe", id="fifo"),
    ],
)
def test_import_refuses_hostile_host_trees(cli: RunnerCli, tmp_path: Path, label: str, entry: str) -> None:
    source = tmp_path / "hostile"
    (source / "sub").mkdir(parents=True)
    (source / "ok.txt").write_text("fine\n")
    path = source / entry
    if label == "absolute":
        path.symlink_to("/etc/passwd")
    elif label == "escaping":
        path.symlink_to("../../../../etc")
    else:
        os.mkfifo(path)
    refused = cli("artifact", "import", str(source), "hostile", ok=4)
    assert entry in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert complete_versions(cli.home, "hostile") == []
    assert latest_number(cli.home, "hostile") is None
    assert staging_leftovers(cli.home) == []


def test_export_copies_out(cli: RunnerCli, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src")
    cli("artifact", "import", str(source), "outbound")
    cli("artifact", "import", str(make_tree(tmp_path / "src2", "two")), "outbound")

    dest = tmp_path / "out-latest"
    done = cli("artifact", "export", "outbound", str(dest))
    assert "version 2" in done.stdout
    assert (dest / "blobs" / "aaa").read_text() == "blob two\n"
    pinned = tmp_path / "out-pinned"
    pinned.mkdir()  # an empty directory is fine
    cli("artifact", "export", "outbound:1", str(pinned))
    assert snapshot_tree(pinned) == snapshot_tree(source)
    assert os.readlink(pinned / "snapshots" / "c1" / "f") == "../../blobs/aaa"
    assert stat.S_IMODE((pinned / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((pinned / "private").stat().st_mode) == 0o600
    # a copy, not a hardlink: editing the export never touches the immutable version
    stored = version_dir(cli.home, "outbound", 1) / "files" / "blobs" / "aaa"
    assert (pinned / "blobs" / "aaa").stat().st_ino != stored.stat().st_ino
    (pinned / "blobs" / "aaa").write_text("edited\n")
    assert cli.json("artifact", "show", "outbound:1", "--verify")["versions"][0]["problems"] == []

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine\n")
    refused = cli("artifact", "export", "outbound", str(busy), ok=2)
    assert "not empty" in refused.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    assert (busy / "keep.txt").read_text() == "mine\n"
    assert cli("artifact", "export", "outbound:7", str(tmp_path / "nowhere"), ok=2).returncode == 2
    assert not (tmp_path / "nowhere").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_kind_namespaces(cli: RunnerCli, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src")
    cli("artifact", "import", str(source), "acme/llm", "--kind", "model")
    cli("artifact", "import", str(source), "acme/corpus", "--kind", "dataset")
    assert (cli.home / "artifacts" / "model" / "acme" / "llm" / "versions").is_dir()
    assert (cli.home / "artifacts" / "dataset" / "acme" / "corpus" / "versions").is_dir()
    kinds = {(r["kind"], r["name"]) for r in cli.json("artifact", "list")}
    assert kinds == {("model", "acme/llm"), ("dataset", "acme/corpus")}
    assert cli.json("artifact", "show", "acme/llm", "--kind", "model")["kind"] == "model"
    assert cli("artifact", "show", "acme/llm", ok=2).returncode == 2  # not in the artifact namespace
    cli("artifact", "export", "acme/llm", str(tmp_path / "m-out"), "--kind", "model")
    assert (tmp_path / "m-out" / "blobs" / "aaa").is_file()
    cli("artifact", "rm", "acme/corpus", "--kind", "dataset")
    assert {r["kind"] for r in cli.json("artifact", "list")} == {"model"}
    assert cli("artifact", "list", "--kind", "model", ok=2).returncode == 2  # list takes no --kind


def test_parallel_imports_become_distinct_versions(cli: RunnerCli, tmp_path: Path) -> None:
    sources = [make_tree(tmp_path / f"p{i}", f"m{i}") for i in range(4)]
    procs = [cli.popen("artifact", "import", str(source), "raced") for source in sources]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out)
    numbers = sorted(int(out.split(" version ")[1].split()[0]) for out in outputs)
    assert numbers == [1, 2, 3, 4]
    assert complete_versions(cli.home, "raced") == [1, 2, 3, 4]
    assert latest_number(cli.home, "raced") == 4
    shown = cli.json("artifact", "show", "raced", "--verify")
    assert all(v["problems"] == [] for v in shown["versions"])
    contents = {(version_dir(cli.home, "raced", n) / "files" / "blobs" / "aaa").read_text() for n in numbers}
    assert contents == {f"blob m{i}\n" for i in range(4)}
    assert staging_leftovers(cli.home) == []
