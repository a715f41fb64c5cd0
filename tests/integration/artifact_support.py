"""Shared plumbing for the artifact and Hugging Face integration tests (not a test module).

Every test drives the real `runner` binary of this virtualenv in a subprocess against a fresh
RUNNER_HOME, so crashes (SIGKILL at fault points) and concurrency are real. Helpers here:

- `RunnerCli`: run `runner ...` with the test's environment; parse `--json`; wait for a run to end
  by polling `describe --json` (which reconciles, so it also finalizes a run that ended on its own).
- `engine_leftovers` / `purge_store`: containers and volumes carrying this home's store label.
- `write_manifest`: manifests are written as JSON, which YAML reads as flow style.
- store inspection straight from disk (`artifact_dir`, `latest_number`, `manifest_of`,
  `staging_leftovers`) so assertions do not depend on the code under test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import docker

RUNNER_BIN = str(Path(sys.executable).with_name("runner"))
STORE_LABEL = "ai.runner.store"
RUN_LABEL = "ai.runner.run-id"
TERMINAL = ("completed", "failed", "terminated")
BUSYBOX = "runner-test/busybox:1"


class RunnerCli:
    """The `runner` CLI bound to one RUNNER_HOME."""

    def __init__(self, home: Path, docker_client: docker.DockerClient) -> None:
        self.home = home
        self.docker = docker_client
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_FAULT", "HF_"))}
        self.base_env["RUNNER_HOME"] = str(home)
        self.base_env["HF_HUB_DISABLE_TELEMETRY"] = "1"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.base_env, **(extra or {})}

    def __call__(self, *args: str, env: Mapping[str, str] | None = None, ok: bool | int = True,
                 timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run `runner ARGS`; `ok=True` expects exit 0, an int expects that code, False anything."""
        done = subprocess.run([RUNNER_BIN, *args], env=self.env(env), capture_output=True, text=True,
                              timeout=timeout, check=False)
        expected = 0 if ok is True else ok
        if ok is not False and done.returncode != expected:
            pytest.fail(f"runner {' '.join(args)} exited {done.returncode}, expected {expected}\n"
                        f"stdout: {done.stdout}\nstderr: {done.stderr}", pytrace=False)
        return done

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([RUNNER_BIN, *args], env=self.env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def json(self, *args: str, env: Mapping[str, str] | None = None, ok: bool | int = True) -> Any:
        return json.loads(self(*args, "--json", env=env, ok=ok).stdout)

    def create(self, manifest: Path, *extra: str, env: Mapping[str, str] | None = None) -> tuple[str, str]:
        """`runner create -f MANIFEST --json`: (run id, stderr)."""
        done = self("create", "-f", str(manifest), "--json", *extra, env=env)
        return json.loads(done.stdout)["id"], done.stderr

    def describe(self, run_id: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.json("describe", run_id, env=env)
        return result

    def wait_ended(self, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
        """Poll `describe --json` (reconciling, so an exited run gets finalized) until terminal."""
        deadline = time.monotonic() + timeout
        interval = 0.1
        while True:
            described = self.describe(run_id)
            if described["status"] in TERMINAL:
                return described
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} still {described['status']} after {timeout:g}s", pytrace=False)
            time.sleep(interval)
            interval = min(interval * 2, 0.5)

    def wait_container_exited(self, run_id: str, timeout: float = 60.0) -> None:
        """Wait for the run's container to exit, without any runner command (nothing reconciles)."""
        deadline = time.monotonic() + timeout
        interval = 0.05
        while True:
            found = self.docker.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
            if found and all(c.status in ("exited", "dead") for c in found):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the container of run {run_id} did not exit within {timeout:g}s", pytrace=False)
            time.sleep(interval)
            interval = min(interval * 2, 0.5)

    def wait_container_running(self, run_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.docker.containers.list(filters={"label": f"{RUN_LABEL}={run_id}", "status": "running"})
            if found:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the container of run {run_id} is not running after {timeout:g}s", pytrace=False)
            time.sleep(0.1)

    def wait_log(self, run_id: str, text: str, timeout: float = 30.0) -> None:
        """Wait until the run's container has printed `text` (read from the engine, no reconcile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for container in self.docker.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}):
                if text.encode() in container.logs():
                    return
            time.sleep(0.1)
        pytest.fail(f"run {run_id} never logged {text!r}", pytrace=False)

    def logs(self, run_id: str) -> str:
        return self("logs", run_id).stdout

    # -- engine objects ---------------------------------------------------------------------------
    def store_id(self) -> str | None:
        db = self.home / "runner.db"
        if not db.exists():
            return None
        with contextlib_closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        return str(row[0]) if row else None

    def status_in_db(self, run_id: str) -> str:
        """The run's stored status, read without reconciling (no runner command involved)."""
        with contextlib_closing(sqlite3.connect(f"file:{self.home / 'runner.db'}?mode=ro", uri=True)) as conn:
            return str(conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0])

    def engine_leftovers(self) -> list[str]:
        """Containers and volumes of this home's store still in the engine."""
        store = self.store_id()
        if store is None:
            return []
        selector = {"label": f"{STORE_LABEL}={store}"}
        found = [f"container {c.name}" for c in self.docker.containers.list(all=True, filters=selector)]
        found += [f"volume {v.name}" for v in self.docker.volumes.list(filters=selector)]
        return found

    def purge(self) -> None:
        store = self.store_id()
        if store is None:
            return
        selector = {"label": f"{STORE_LABEL}={store}"}
        for container in self.docker.containers.list(all=True, filters=selector):
            container.remove(force=True, v=True)
        for volume in self.docker.volumes.list(filters=selector):
            volume.remove(force=True)


@contextmanager
def contextlib_closing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield conn
    finally:
        conn.close()


def make_cli(runner_home: Path, docker_client: docker.DockerClient) -> Iterator[RunnerCli]:
    """Fixture body: a RunnerCli whose engine objects are force-removed at teardown."""
    cli = RunnerCli(runner_home, docker_client)
    try:
        yield cli
    finally:
        cli.purge()


def write_manifest(path: Path, *, name: str, run: str | list[str], image: str = BUSYBOX,
                   imports: Mapping[str, Any] | None = None, exports: Mapping[str, Any] | None = None,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """A run manifest (JSON is valid YAML flow style)."""
    steps = [run] if isinstance(run, str) else run
    data: dict[str, Any] = {"name": name, "resources": {"preset": "cpu-small"}, "image": image,
                            "run": [{"command": step} for step in steps]}
    if imports:
        data["import"] = dict(imports)
    if exports:
        data["export"] = dict(exports)
    data.update(extra or {})
    path.write_text(json.dumps(data, indent=1))
    return path


# -- the store, read straight from disk ------------------------------------------------------------

def artifact_dir(home: Path, name: str, kind: str = "artifact") -> Path:
    return home.joinpath("artifacts", kind, *name.split("/"))


def version_dir(home: Path, name: str, number: int, kind: str = "artifact") -> Path:
    return artifact_dir(home, name, kind) / "versions" / f"{number:06d}"


def latest_number(home: Path, name: str, kind: str = "artifact") -> int | None:
    path = artifact_dir(home, name, kind) / "LATEST"
    return int(path.read_text()) if path.exists() else None


def complete_versions(home: Path, name: str, kind: str = "artifact") -> list[int]:
    versions = artifact_dir(home, name, kind) / "versions"
    if not versions.is_dir():
        return []
    return sorted(int(p.name) for p in versions.iterdir()
                  if (p / "MANIFEST.json").is_file() and not (p / "REMOVED").exists())


def manifest_of(home: Path, name: str, number: int, kind: str = "artifact") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((version_dir(home, name, number, kind) / "MANIFEST.json").read_text())
    return data


def staging_leftovers(home: Path) -> list[Path]:
    """Anything inside any `.staging` dir, LATEST.tmp files, and the store's trash."""
    root = home / "artifacts"
    if not root.is_dir():
        return []
    found = [child for staging in root.rglob(".staging") for child in staging.iterdir()]
    found += list(root.rglob("LATEST.tmp.*"))
    trash = root / ".trash"
    if trash.is_dir():
        found += list(trash.iterdir())
    return found


def snapshot_tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """{relpath: (type, mode, sha256-or-link-target)} of a host tree, links never followed."""
    import hashlib
    import stat

    result: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                result[rel] = ("symlink", 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                result[rel] = ("dir", mode, "")
            else:
                result[rel] = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return result


def tree_from_manifest(manifest: Mapping[str, Any]) -> dict[str, tuple[str, int, str]]:
    """The same shape as `snapshot_tree`, from a MANIFEST.json document."""
    result: dict[str, tuple[str, int, str]] = {}
    for rel, entry in manifest["entries"].items():
        if entry["type"] == "symlink":
            result[rel] = ("symlink", 0, entry["target"])
        elif entry["type"] == "dir":
            result[rel] = ("dir", entry["mode"], "")
        else:
            result[rel] = ("file", entry["mode"], entry["sha256"])
    return result


# A shell snippet that prints one line per entry below $1, in a format `parse_listing` reads:
#   F <sha256> <octal mode> <path>   |   L <target> -> <path>   |   D <octal mode> <path>
LISTING_SH = r"""
cd "$1" && find . -mindepth 1 | sort | while IFS= read -r p; do
  r=${p#./}
  if [ -L "$p" ]; then echo "L $(readlink "$p") -> $r";
  elif [ -d "$p" ]; then echo "D $(stat -c %a "$p") $r";
  else echo "F $(sha256sum "$p" | cut -d' ' -f1) $(stat -c %a "$p") $r"; fi
done
echo LISTING-END
"""


def listing_command(path: str) -> str:
    return f"echo LISTING-BEGIN; sh -c '{LISTING_SH.replace(chr(39), chr(34))}' listing {path}"


def parse_listing(logs: str) -> dict[str, tuple[str, int, str]]:
    """Parse the in-container listing printed by `listing_command` back into `snapshot_tree` shape."""
    begin = logs.index("LISTING-BEGIN")
    end = logs.index("LISTING-END", begin)
    result: dict[str, tuple[str, int, str]] = {}
    for line in logs[begin:end].splitlines()[1:]:
        if line.startswith("L "):
            target, _, rel = line[2:].partition(" -> ")
            result[rel] = ("symlink", 0, target)
        elif line.startswith("D "):
            mode, _, rel = line[2:].partition(" ")
            result[rel] = ("dir", int(mode, 8), "")
        elif line.startswith("F "):
            digest, mode, rel = line[2:].split(" ", 2)
            result[rel] = ("file", int(mode, 8), digest)
    return result
