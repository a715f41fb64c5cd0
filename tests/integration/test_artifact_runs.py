"""Artifact imports and exports through real runs on the real engine (issue "Done when", R11/S9 context).

- The cache pattern (same path imported and exported) across runs with a synthetic Hugging Face
  cache layout seeded by `runner artifact import`: run 1 sees v1 (files, links followed in the
  container) and changes it; v2 is exactly run 1's changes; v1 still verifies byte for byte;
  relative links and modes survive; a pinned import sees v1; an absent artifact starts empty.
- Exports happen on completed, failed and terminated runs, for every artifact namespace.
- Cost: an export of a 200 MiB tree with one changed file hashes one file and hardlinks the rest.
- Hostile trees made inside the container (absolute link, escaping link, FIFO) are refused at
  export; the run says why and LATEST still names the previous complete version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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

CACHE_TARGET = "/root/.cache/huggingface"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "hub/models--org--m"
N_BLOBS = 160


@pytest.fixture
def cli(runner_home: Path, docker_client: docker.DockerClient, busybox_image: str) -> Iterator[RunnerCli]:
    yield from make_cli(runner_home, docker_client)


# --------------------------------------------------------------------------- synthetic HF cache


def _blob(i: int) -> bytes:
    return f"blob {i}\n".encode() * (i % 7 + 1)


def build_hf_tree(root: Path) -> dict[str, str]:
    """A Hugging Face cache layout: content-addressed blobs, relative snapshot links, refs, a nested
    subdir, a 0755 script and a 0600 file. Returns {snapshot file name: blob sha}."""
    repo = root / REPO
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    snap = repo / "snapshots" / COMMIT
    (snap / "sub").mkdir(parents=True)
    (snap / "replaced").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    names: dict[str, str] = {}
    for i in range(N_BLOBS):
        data = _blob(i)
        sha = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / sha).write_bytes(data)
        if i % 10 == 0:
            (snap / "sub" / f"s{i}").symlink_to(f"../../../blobs/{sha}")
        else:
            (snap / f"f{i}").symlink_to(f"../../blobs/{sha}")
        names[f"f{i}"] = sha
    (snap / "replaced" / "old.txt").write_text("old content\n")
    (root / "bin").mkdir()
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "secret.txt").write_text("only me\n")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                os.chmod(path, 0o644)
    os.chmod(root / "bin" / "run.sh", 0o755)
    os.chmod(root / "secret.txt", 0o600)
    return names


def run1_commands(names: dict[str, str]) -> str:
    """What run 1 does inside the container to its imported cache."""
    snap = f"{REPO}/snapshots/{COMMIT}"
    sha1, sha_last = names["f1"], names[f"f{N_BLOBS - 1}"]
    return "\n".join([
        f"cd {CACHE_TARGET}",
        # follow every snapshot link: the content must hash to the blob it names
        f"for f in {snap}/f*; do [ \"$(sha256sum < $f | cut -d' ' -f1)\" = \"$(basename $(readlink $f))\" ]"
        " || echo BADLINK $f; done; echo LINKS-CHECKED",
        f"echo FIRST=$(cat {snap}/f1 | head -1)",
        f"printf 'changed blob\\n' > {REPO}/blobs/{sha1}",  # modify a blob (copy-up)
        f"rm {REPO}/blobs/{sha_last} {snap}/f{N_BLOBS - 1}",  # delete files (whiteouts)
        f"rm -rf {snap}/sub",  # delete a directory
        f"rm -rf {snap}/replaced && mkdir {snap}/replaced && echo fresh > {snap}/replaced/new.txt",  # opaque
        "mkdir -p hub/newdir/deeper && echo made > hub/newdir/deeper/y.txt",  # new dirs
        "echo added > hub/new.txt",
        f"ln -s ../../blobs/{names['f2']} {snap}/alias",  # a new relative link
        "chmod 700 bin/run.sh",  # a mode change is exported too
    ])


def apply_run1_on_host(root: Path, names: dict[str, str]) -> None:
    """The same changes as `run1_commands`, on a host copy: the expected v2."""
    repo = root / REPO
    snap = repo / "snapshots" / COMMIT
    (repo / "blobs" / names["f1"]).write_bytes(b"changed blob\n")
    (repo / "blobs" / names[f"f{N_BLOBS - 1}"]).unlink()
    (snap / f"f{N_BLOBS - 1}").unlink()
    shutil.rmtree(snap / "sub")
    shutil.rmtree(snap / "replaced")
    (snap / "replaced").mkdir(mode=0o755)
    (snap / "replaced" / "new.txt").write_text("fresh\n")
    (root / "hub" / "newdir" / "deeper").mkdir(parents=True)
    os.chmod(root / "hub" / "newdir", 0o755)
    os.chmod(root / "hub" / "newdir" / "deeper", 0o755)
    (root / "hub" / "newdir" / "deeper" / "y.txt").write_text("made\n")
    (root / "hub" / "new.txt").write_text("added\n")
    for path in (snap / "replaced" / "new.txt", root / "hub" / "newdir" / "deeper" / "y.txt", root / "hub" / "new.txt"):
        os.chmod(path, 0o644)
    (snap / "alias").symlink_to(f"../../blobs/{names['f2']}")
    os.chmod(root / "bin" / "run.sh", 0o700)


# --------------------------------------------------------------------------- the cache pattern


def test_cache_pattern_round_trips_across_runs(cli: RunnerCli, tmp_path: Path) -> None:
    source = tmp_path / "seed"
    names = build_hf_tree(source)
    original = snapshot_tree(source)
    assert len(original) > 300
    imported = cli("artifact", "import", str(source), "hfcache")
    assert "version 1" in imported.stdout
    home = cli.home

    io = {CACHE_TARGET: "artifact://hfcache"}
    m1 = write_manifest(tmp_path / "run1.yaml", name="cache-run1", imports=io, exports=io,
                        run=[listing_command(CACHE_TARGET), run1_commands(names)])
    run1, _ = cli.create(m1)
    ended1 = cli.wait_ended(run1)
    assert ended1["status"] == "completed", ended1
    logs1 = cli.logs(run1)
    # run 1 saw exactly v1 at the target, and every snapshot link resolved inside the container
    assert parse_listing(logs1) == original
    assert "LINKS-CHECKED" in logs1 and "BADLINK" not in logs1
    assert f"FIRST={_blob(1).decode().splitlines()[0]}" in logs1
    assert ended1["exports"][0]["version"] == 2 and ended1["exports"][0]["error"] is None
    assert ended1["imports"][0]["version"] == 1

    expected = tmp_path / "expected"
    shutil.copytree(source, expected, symlinks=True)
    apply_run1_on_host(expected, names)
    expected_tree = snapshot_tree(expected)
    assert tree_from_manifest(manifest_of(home, "hfcache", 2)) == expected_tree
    v2_files = version_dir(home, "hfcache", 2) / "files"
    assert snapshot_tree(v2_files) == expected_tree
    # relative links byte for byte (os.readlink, no normalisation), modes kept
    for rel, (kind, _mode, target) in expected_tree.items():
        if kind == "symlink":
            assert os.readlink(v2_files / rel) == target, rel
    assert stat.S_IMODE((v2_files / "secret.txt").lstat().st_mode) == 0o600
    assert stat.S_IMODE((v2_files / "bin" / "run.sh").lstat().st_mode) == 0o700
    assert stat.S_IMODE((version_dir(home, "hfcache", 1) / "files" / "bin" / "run.sh").lstat().st_mode) == 0o755

    # version 1 is untouched by run 1's writes: deep verify passes and it is byte-identical to the seed
    shown = cli("artifact", "show", "hfcache:1", "--verify")
    assert " ok" in shown.stdout
    shown_json = cli.json("artifact", "show", "hfcache:1", "--verify")
    assert shown_json["versions"][0]["problems"] == []
    assert snapshot_tree(version_dir(home, "hfcache", 1) / "files") == original
    assert latest_number(home, "hfcache") == 2

    # run 2 imports v2 (the latest) and sees exactly run 1's changes; it changes nothing
    m2 = write_manifest(tmp_path / "run2.yaml", name="cache-run2", imports=io, exports=io,
                        run=listing_command(CACHE_TARGET))
    run2, _ = cli.create(m2)
    ended2 = cli.wait_ended(run2)
    assert ended2["status"] == "completed", ended2
    assert ended2["imports"][0]["version"] == 2
    assert parse_listing(cli.logs(run2)) == expected_tree
    assert ended2["exports"][0]["version"] == 3
    assert ended2["exports"][0]["hashed"] == 0  # nothing changed: nothing re-read
    assert tree_from_manifest(manifest_of(home, "hfcache", 3)) == expected_tree

    # a pinned import sees version 1 even though LATEST is 3
    m3 = write_manifest(tmp_path / "run3.yaml", name="cache-run3",
                        imports={CACHE_TARGET: "artifact://hfcache:1"}, run=listing_command(CACHE_TARGET))
    run3, _ = cli.create(m3)
    ended3 = cli.wait_ended(run3)
    assert ended3["status"] == "completed", ended3
    assert ended3["imports"][0]["version"] == 1
    assert parse_listing(cli.logs(run3)) == original

    for number in (1, 2, 3):
        assert cli.json("artifact", "show", f"hfcache:{number}", "--verify")["versions"][0]["problems"] == []
    assert cli.engine_leftovers() == []


def test_absent_artifact_starts_empty_with_a_notice(cli: RunnerCli, tmp_path: Path) -> None:
    io = {"/data": "artifact://not-yet"}
    manifest = write_manifest(tmp_path / "m.yaml", name="starts-empty", imports=io, exports=io,
                              run="echo COUNT=$(ls -A /data | wc -l); echo first > /data/first.txt")
    run_id, stderr = cli.create(manifest)
    assert "does not exist yet" in stderr and "/data starts empty" in stderr
    ended = cli.wait_ended(run_id)
    assert ended["status"] == "completed", ended
    assert "COUNT=0" in cli.logs(run_id)
    assert ended["imports"][0]["version"] is None
    assert ended["exports"][0]["version"] == 1
    assert tree_from_manifest(manifest_of(cli.home, "not-yet", 1)) == {
        "first.txt": ("file", 0o644, hashlib.sha256(b"first\n").hexdigest())}
    assert cli.engine_leftovers() == []


# --------------------------------------------------------------------------- exports on every ending


@pytest.mark.parametrize(
    ("ending", "uri", "kind", "name"),
    [
        ("completed", "vessl-artifact://org/proj/out", "artifact", "org/proj/out"),
        ("failed", "vessl-model://org/repo", "model", "org/repo"),
        ("terminated", "vessl-dataset://org/ds", "dataset", "org/ds"),
    ],
)
def test_export_on_every_ending(cli: RunnerCli, tmp_path: Path, ending: str, uri: str, kind: str,
                                name: str) -> None:
    tail = {"completed": "true", "failed": "exit 3", "terminated": "echo READY; exec sleep 300"}[ending]
    manifest = write_manifest(tmp_path / "m.yaml", name=f"export-{ending}", exports={"/output": uri},
                              run=f"mkdir -p /output/sub && echo {ending} > /output/sub/result.txt && {tail}")
    run_id, _ = cli.create(manifest)
    if ending == "terminated":
        cli.wait_log(run_id, "READY")
        stopped = cli.json("terminate", run_id, "--grace", "5")
        assert stopped[0]["status"] == "terminated"
    described = cli.wait_ended(run_id)
    assert described["status"] == ending, described
    if ending == "failed":
        assert described["exit_code"] == 3
        assert "exit code 3" in described["reason"]
    assert described["exports"] == [{"target": "/output", "artifact": f"{kind}:{name}", "version": 1,
                                     "error": None, "files": 2, "hashed": 1}]
    assert tree_from_manifest(manifest_of(cli.home, name, 1, kind)) == {
        "sub": ("dir", 0o755, ""),
        "sub/result.txt": ("file", 0o644, hashlib.sha256(f"{ending}\n".encode()).hexdigest()),
    }
    assert manifest_of(cli.home, name, 1, kind)["source_run_id"] == run_id
    text = cli("describe", run_id).stdout
    assert "exports run when the run ends" in text
    assert f"/output → {kind}:{name} version 1" in text
    shown = cli.json("artifact", "show", name, "--kind", kind, "--verify")
    assert shown["latest"] == 1 and shown["versions"][0]["source_run_id"] == run_id
    assert cli.engine_leftovers() == []


def test_verbose_map_forms_import_and_export(cli: RunnerCli, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "weights.bin").write_bytes(b"w" * 100)
    cli("artifact", "import", str(seed), "acme/llm", "--kind", "model")
    manifest = write_manifest(
        tmp_path / "m.yaml", name="verbose-forms",
        imports={"/model": {"model": {"organization_name": "acme", "model_repository_name": "llm"}}},
        exports={"/model": {"model": {"organization_name": "acme", "model_repository_name": "llm"}},
                 "/out": {"artifact": {"organization_name": "acme", "project_name": "p", "name": "out"}}},
        run="cat /model/weights.bin > /dev/null && echo extra > /model/extra.txt && mkdir -p /out && echo o > /out/o",
    )
    run_id, _ = cli.create(manifest)
    described = cli.wait_ended(run_id)
    assert described["status"] == "completed", described
    by_target = {e["target"]: e for e in described["exports"]}
    assert by_target["/model"]["artifact"] == "model:acme/llm" and by_target["/model"]["version"] == 2
    assert by_target["/out"]["artifact"] == "artifact:acme/p/out" and by_target["/out"]["version"] == 1
    assert set(manifest_of(cli.home, "acme/llm", 2, "model")["entries"]) == {"weights.bin", "extra.txt"}
    assert cli.engine_leftovers() == []


# --------------------------------------------------------------------------- cost: metadata only


def test_export_is_metadata_only(cli: RunnerCli, tmp_path: Path) -> None:
    seed = tmp_path / "big"
    seed.mkdir()
    chunk = os.urandom(1 << 20)
    for i in range(50):  # 50 x 4 MiB of real (non-sparse) bytes
        with open(seed / f"shard-{i:02d}.bin", "wb") as handle:
            for j in range(4):
                handle.write(chunk[j:] + chunk[:j] if j else chunk)
    (seed / "small.txt").write_text("v1\n")
    cli("artifact", "import", str(seed), "bigmodel")
    home = cli.home
    v1 = version_dir(home, "bigmodel", 1) / "files"

    io = {"/cache": "artifact://bigmodel"}
    manifest = write_manifest(tmp_path / "m.yaml", name="metadata-only", imports=io, exports=io,
                              run="echo v2 > /cache/small.txt")
    run_id, _ = cli.create(manifest)
    described = cli.wait_ended(run_id)
    assert described["status"] == "completed", described
    export = described["exports"][0]
    assert export["version"] == 2 and export["error"] is None
    assert export["files"] == 51
    assert export["hashed"] == 1  # only the changed file was read; the 200 MiB were not

    v2 = version_dir(home, "bigmodel", 2) / "files"
    for i in range(50):
        name = f"shard-{i:02d}.bin"
        assert (v2 / name).stat().st_ino == (v1 / name).stat().st_ino, name
    assert (v2 / "small.txt").stat().st_ino != (v1 / "small.txt").stat().st_ino
    assert (v2 / "small.txt").read_text() == "v2\n"
    assert (v1 / "small.txt").read_text() == "v1\n"
    assert cli.json("artifact", "show", "bigmodel:2", "--verify")["versions"][0]["problems"] == []
    assert cli.engine_leftovers() == []


# --------------------------------------------------------------------------- hostile trees at export


@pytest.mark.parametrize(
    ("label", "command", "needle"),
    [
        pytest.param("absolute-link", "ln -s /etc/passwd /cache/evil", "absolute", id="absolute-link"),
        pytest.param("escaping-link", "mkdir -p /cache/a/b && ln -s ../../../../etc /cache/a/b/escape", "escape",
                     id="escaping-link"),
        pytest.param("chained-link", "mkdir -p /cache/d && ln -s .. /cache/d/up && ln -s d/up/.. /cache/chain",
                     "outside", id="chained-link"),
        pytest.param("fifo", "mkfifo /cache/pipe", "FIFO", id="fifo"),
    ],
)
def test_hostile_entries_refuse_the_export(cli: RunnerCli, tmp_path: Path, label: str, command: str,
                                           needle: str) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "ok.txt").write_text("fine\n")
    cli("artifact", "import", str(seed), "victim")
    io = {"/cache": "artifact://victim"}
    manifest = write_manifest(tmp_path / "m.yaml", name=f"hostile-{label}", imports=io, exports=io,
                              run=f"echo more > /cache/more.txt && {command}")
    run_id, _ = cli.create(manifest)
    described = cli.wait_ended(run_id)
    assert described["status"] == "failed", described
    assert "export failed" in described["reason"] and needle in described["reason"], described["reason"]
    export = described["exports"][0]
    assert export["version"] is None and needle in export["error"]
    assert "FAILED" in cli("describe", run_id).stdout
    # nothing was published, LATEST still names the previous complete version, nothing half-built remains
    assert latest_number(cli.home, "victim") == 1
    assert complete_versions(cli.home, "victim") == [1]
    assert sorted(p.name for p in (artifact_dir(cli.home, "victim") / "versions").iterdir()) == ["000001"]
    assert staging_leftovers(cli.home) == []
    assert cli.json("artifact", "show", "victim", "--verify")["versions"][0]["problems"] == []
    assert not Path("/etc/passwd").is_symlink()
    assert cli.engine_leftovers() == []


def test_setuid_bits_are_stripped_at_export(cli: RunnerCli, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", name="setuid", exports={"/out": "artifact://suid"},
                              run="mkdir -p /out && echo x > /out/tool && chmod 4755 /out/tool && "
                                  "mkdir /out/shared && chmod 1777 /out/shared")
    run_id, _ = cli.create(manifest)
    described = cli.wait_ended(run_id)
    assert described["status"] == "completed", described
    entries = manifest_of(cli.home, "suid", 1)["entries"]
    assert entries["tool"]["mode"] == 0o755 and entries["shared"]["mode"] == 0o777
    files = version_dir(cli.home, "suid", 1) / "files"
    assert stat.S_IMODE((files / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((files / "shared").stat().st_mode) == 0o777
    assert cli.engine_leftovers() == []


def test_pinned_import_of_a_missing_version_is_refused(cli: RunnerCli, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "a").write_text("a\n")
    cli("artifact", "import", str(seed), "pinned")
    cli("artifact", "import", str(seed), "pinned")
    cli("artifact", "rm", "pinned:1")
    manifest = write_manifest(tmp_path / "m.yaml", name="pinned-missing",
                              imports={"/data": "artifact://pinned:1"}, run="true")
    refused = cli("create", "-f", str(manifest), ok=2)
    assert "has no version 1" in refused.stderr
    assert cli.json("list") == []  # refused at planning: no record, nothing in the engine
    assert cli.engine_leftovers() == []


def test_import_one_artifact_export_another_at_the_same_path(cli: RunnerCli, tmp_path: Path) -> None:
    """Start from a base artifact, publish the result under another name: the new artifact's first
    version is base + the run's changes (the merge must use the version the container saw)."""
    seed = tmp_path / "seed"
    (seed / "weights").mkdir(parents=True)
    (seed / "weights" / "w.bin").write_bytes(b"base weights\n")
    (seed / "config.json").write_text("{}\n")
    cli("artifact", "import", str(seed), "base-model")
    manifest = write_manifest(tmp_path / "m.yaml", name="finetune",
                              imports={"/model": "artifact://base-model"},
                              exports={"/model": "artifact://finetuned"},
                              run="echo tuned > /model/adapter.bin && rm /model/config.json")
    run_id, _ = cli.create(manifest)
    described = cli.wait_ended(run_id)
    assert described["status"] == "completed", described
    assert described["exports"][0]["artifact"] == "artifact:finetuned" and described["exports"][0]["version"] == 1
    assert tree_from_manifest(manifest_of(cli.home, "finetuned", 1)) == {
        "weights": ("dir", 0o755, ""),
        "weights/w.bin": ("file", 0o644, hashlib.sha256(b"base weights\n").hexdigest()),
        "adapter.bin": ("file", 0o644, hashlib.sha256(b"tuned\n").hexdigest()),
    }
    assert cli.json("artifact", "show", "finetuned", "--verify")["versions"][0]["problems"] == []
    assert complete_versions(cli.home, "base-model") == [1]  # the base is untouched
    assert cli.engine_leftovers() == []
