"""Imports and mounts on the real engine: git (tag, branch, commit) through the mirror cache, the
local-source and host-path policies, named volumes, host paths, and object stores refused.

Every git process goes through a recording wrapper first on PATH, so "no git invoked" is observed,
not assumed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from runkit import RunKit

BUSYBOX = "runner-test/busybox:1"
REAL_GIT = shutil.which("git") or "/usr/bin/git"


@dataclass(frozen=True)
class Repo:
    path: Path
    tag_commit: str  # v1.0
    main_commit: str  # main's head
    feature_commit: str  # branch `feature`


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run([REAL_GIT, *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def _commit(repo: Path, version: str) -> str:
    (repo / "src" / "app" / "VERSION").write_text(version + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", version)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "repo"
    (path / "src" / "app").mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    tagged = _commit(path, "one")
    _git(path, "tag", "v1.0")
    head = _commit(path, "two")
    _git(path, "checkout", "-q", "-b", "feature")
    feature = _commit(path, "three")
    _git(path, "checkout", "-q", "main")
    return Repo(path, tagged, head, feature)


@pytest.fixture
def git_log(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """(env with a recording `git` first on PATH, the file it appends each invocation to)."""
    bin_dir = tmp_path / "git-wrapper"
    bin_dir.mkdir()
    log = tmp_path / "git-calls.log"
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {REAL_GIT} "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def _git_manifest(repo: Repo, workdir: str = "/tag/src/app") -> str:
    return f"""
        name: gitrun
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        import:
          /tag:
            git: {{url: "file://{repo.path}", ref: v1.0}}
          /branch:
            git: {{url: "{repo.path}", ref: feature}}
          /commit:
            git: {{url: "file://{repo.path}", ref: {repo.main_commit}}}
        run:
          - command: |
              echo "pwd=$(pwd) tag=$(cat VERSION) branch=$(cat /branch/src/app/VERSION)" \
                "commit=$(cat /commit/src/app/VERSION)"
            workdir: {workdir}
    """


def test_git_import_of_a_local_repo_at_tag_branch_and_commit(kit: RunKit, repo: Repo, git_log):
    env, log = git_log
    result = kit.cli("create", "-f", kit.manifest(_git_manifest(repo)), "--allow-local-sources", "--json", env=env)
    assert result.code == 0, result.text
    run_id = result.json()["id"]
    mounts = {m["Destination"]: m for m in kit.inspect(run_id)["Mounts"]}
    assert {mounts[target]["Type"] for target in ("/tag", "/branch", "/commit")} == {"bind"}
    assert kit.wait_exit(run_id) == 0
    assert "pwd=/tag/src/app tag=one branch=three commit=two" in kit.cli("logs", run_id).out
    imports = {item["target"]: item for item in kit.describe(run_id)["imports"]}
    assert imports["/tag"]["commit"] == repo.tag_commit
    assert imports["/branch"]["commit"] == repo.feature_commit
    assert imports["/commit"]["commit"] == repo.main_commit
    assert log.read_text().strip(), "the clone went through git on PATH"
    mirrors = [p for p in (kit.home / "cache" / "git").rglob("HEAD") if (p.parent / "objects").is_dir()]
    assert mirrors, "the clone goes through a bare mirror cache in RUNNER_HOME"
    assert kit.listing()[run_id]["status"] == "completed"
    assert not (kit.home / "runs" / run_id / "imports").exists(), "the per-run checkout is removed at the end"
    kit.assert_clean()


def test_local_git_source_is_refused_without_the_flag(kit: RunKit, repo: Repo, git_log):
    env, log = git_log
    result = kit.cli("create", "-f", kit.manifest(_git_manifest(repo)), env=env)
    assert result.code == 4, result.text
    assert "--allow-local-sources" in result.err
    assert not log.exists(), "a refused source must not run git at all"
    assert kit.listing() == {}
    kit.assert_clean()


def test_missing_workdir_inside_a_git_import_fails_with_a_suggestion(kit: RunKit, repo: Repo):
    result = kit.cli("create", "-f", kit.manifest(_git_manifest(repo, workdir="/tag/app")), "--allow-local-sources")
    assert result.code == 1, result.text
    assert "did you mean workdir: /tag/src/app" in result.err
    (run,) = kit.listing().values()
    assert run["status"] == "failed"
    assert run["reason"].startswith("import failed: step 1: workdir /tag/app does not exist")
    kit.assert_clean()


def test_named_volume_import_and_host_path_mounts(kit: RunKit, tmp_path: Path, test_labels: dict[str, str],
                                                  docker_client: docker.DockerClient):
    volume = docker_client.volumes.create(f"rtest-{uuid.uuid4().hex[:12]}", labels=test_labels)
    shared, readonly = tmp_path / "shared", tmp_path / "readonly"
    shared.mkdir()
    readonly.mkdir()
    (shared / "in.txt").write_text("from-the-host\n")
    created = kit.create(f"""
        name: mounts
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        import:
          /data: volume://{volume.name}
        mount:
          /host: hostpath://{shared}
          /ro:
            hostpath: {{path: {readonly}}}
            readonly: true
        run:
          - command: |
              cat /host/in.txt
              echo from-the-run > /host/out.txt
              echo kept-in-the-volume > /data/x
              if touch /ro/x 2>/dev/null; then echo ro-writable; else echo ro-refused; fi
    """)
    run_id = created["id"]
    mounts = {m["Destination"]: m for m in kit.inspect(run_id)["Mounts"]}
    assert (mounts["/data"]["Type"], mounts["/data"]["Name"]) == ("volume", volume.name)
    assert (mounts["/host"]["Type"], mounts["/host"]["Source"]) == ("bind", str(shared))
    assert mounts["/ro"]["RW"] is False
    assert kit.wait_exit(run_id) == 0
    logs = kit.cli("logs", run_id).out
    assert "from-the-host" in logs and "ro-refused" in logs
    assert (shared / "out.txt").read_text() == "from-the-run\n"
    assert not any(readonly.iterdir())
    assert kit.listing()[run_id]["status"] == "completed"
    kit.assert_clean()
    # The named volume is the user's: it outlives the run, with what the run wrote.
    reader = docker_client.containers.run(BUSYBOX, ["cat", "/data/x"], labels=test_labels, detach=True,
                                          volumes={volume.name: {"bind": "/data", "mode": "ro"}})
    assert reader.wait(timeout=60)["StatusCode"] == 0
    assert reader.logs() == b"kept-in-the-volume\n"


@pytest.mark.parametrize("path", ["/etc", "/", "/var/run/docker.sock", "/proc/1"])
def test_sensitive_host_paths_are_refused(kit: RunKit, path: str):
    result = kit.cli("create", "-f", kit.manifest(f"""
        name: hostpath
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        mount:
          /host: hostpath://{path}
        run:
          - command: ls /host
    """))
    assert result.code == 4, result.text
    assert "refused by policy" in result.err and f"--allow-host-path {path}" in result.err
    assert kit.listing() == {}
    kit.assert_clean()


def test_a_sensitive_host_path_is_mounted_when_explicitly_allowed(kit: RunKit):
    manifest = kit.manifest(f"""
        name: etc
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        mount:
          /host-etc:
            hostpath: {{path: /etc}}
            readonly: true
        run:
          - command: test -f /host-etc/hostname && echo saw-etc
    """)
    result = kit.cli("create", "-f", manifest, "--allow-host-path", "/etc", "--json")
    assert result.code == 0, result.text
    run_id = result.json()["id"]
    assert kit.wait_exit(run_id) == 0
    assert "saw-etc" in kit.cli("logs", run_id).out
    assert kit.listing()[run_id]["status"] == "completed"
    kit.assert_clean()


@pytest.mark.parametrize("uri", ["s3://bucket/prefix", "gs://bucket/prefix"])
def test_object_store_sources_are_refused(kit: RunKit, uri: str):
    result = kit.cli("create", "-f", kit.manifest(f"""
        name: objects
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        import:
          /data: {uri}
        run:
          - command: ls /data
    """))
    assert result.code == 2, result.text
    scheme = uri.split(":", 1)[0]
    assert f"{scheme}:// sources are not supported by the local runner" in result.err
    assert kit.listing() == {}
    kit.assert_clean()
