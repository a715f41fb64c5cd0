"""The benchmark session: where temporary state lives, how to call runner and Docker, and cleanup.

Everything the suite creates is findable afterwards: baseline containers carry the label
`runner-bench.session=<id>`; runner's own containers and volumes carry its store label, and every
RUNNER_HOME the suite makes is remembered so that its store id can be read back. `release()`
removes all of it (engine objects first, then the directories, so no overlay mount is left
pointing into a deleted tree); it runs after every group and once more on exit, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import HarnessError

SESSION_LABEL = "runner-bench.session"
STORE_LABEL = "ai.runner.store"  # runner labels every container and volume with its store id
BUSYBOX = "runner-test/busybox:1"
CHILD_GRACE_S = 15.0


@dataclass(frozen=True)
class Settings:
    quick: bool
    repo: Path  # the checkout being measured
    runner: Path  # the `runner` console script of that checkout's venv
    python: Path  # the venv's interpreter (the `python -c pass` baseline)
    quickstart: Path


@dataclass(frozen=True)
class RunnerEnv:
    """One RUNNER_HOME and the environment that points runner at it."""

    home: Path
    env: Mapping[str, str]


class BenchContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = uuid.uuid4().hex[:12]
        self.root = Path(tempfile.mkdtemp(prefix=f"runner-bench-{self.session}-"))
        self._homes: list[Path] = []
        self._dirs: list[Path] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._docker: Any = None
        self._counter = 0

    # -- settings -------------------------------------------------------------------------------
    def reps(self, full: int, quick: int) -> int:
        return quick if self.settings.quick else full

    @property
    def labels(self) -> dict[str, str]:
        return {SESSION_LABEL: self.session}

    def label_args(self) -> list[str]:
        return ["--label", f"{SESSION_LABEL}={self.session}"]

    def say(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def unique(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    # -- state ----------------------------------------------------------------------------------
    def new_dir(self, name: str) -> Path:
        path = self.root / self.unique(f"{name}-")
        path.mkdir(parents=True)
        self._dirs.append(path)
        return path

    def new_home(self, name: str) -> RunnerEnv:
        home = self.new_dir(f"home-{name}")
        self._homes.append(home)
        env = {**os.environ, "RUNNER_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("RUNNER_DEBUG", None)
        return RunnerEnv(home, env)

    def runner(self, *args: str | Path) -> list[str]:
        return [str(self.settings.runner), *(str(a) for a in args)]

    def spawn(self, argv: Sequence[str | Path], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a child that the cleanup will reap (used for parallel creates)."""
        child = subprocess.Popen([str(a) for a in argv], env=dict(env) if env is not None else None,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._children.append(child)
        return child

    # -- Docker ---------------------------------------------------------------------------------
    def docker(self) -> Any:
        """A docker-py client (independent of the code under test) for polling and cleanup."""
        if self._docker is None:
            import docker

            self._docker = docker.from_env(timeout=300)
        return self._docker

    def wait_exited(self, container: str, timeout_s: float = 120.0) -> int:
        try:
            result = self.docker().api.wait(container, timeout=timeout_s)
        except Exception as exc:  # docker-py raises requests' ReadTimeout or its own APIError
            raise HarnessError(f"container {container} did not exit within {timeout_s:g}s: {exc}") from None
        return int(result.get("StatusCode", -1))

    def wait_log_line(self, container: str, line: bytes, timeout_s: float) -> None:
        """Poll the container's last log line until it is `line` (output complete)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last = self.docker().api.logs(container, tail=1, stdout=True, stderr=True)
            if last.strip() == line:
                return
            time.sleep(0.5)
        raise HarnessError(f"{container} did not print {line.decode()!r} within {timeout_s:g}s")

    # -- cleanup --------------------------------------------------------------------------------
    def release(self) -> None:
        """Remove every engine object and directory made so far (idempotent)."""
        self._reap_children()
        selectors = [f"{SESSION_LABEL}={self.session}"]
        selectors += [f"{STORE_LABEL}={store}" for store in map(_store_id, self._homes) if store]
        if selectors and self._engine_reachable():
            client = self.docker()
            for selector in selectors:
                for container in client.containers.list(all=True, filters={"label": selector}):
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
            for selector in selectors:
                for volume in client.volumes.list(filters={"label": selector}):
                    with contextlib.suppress(Exception):
                        volume.remove(force=True)
        for path in reversed(self._dirs):
            force_rmtree(path)
        self._dirs.clear()
        self._homes.clear()

    def release_session_containers(self) -> None:
        """Remove the baseline containers (labelled with this session) right away."""
        for container in self.docker().containers.list(all=True, filters={"label": f"{SESSION_LABEL}={self.session}"}):
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def close(self) -> None:
        try:
            self.release()
        finally:
            force_rmtree(self.root)
            if self._docker is not None:
                with contextlib.suppress(Exception):
                    self._docker.close()

    def _reap_children(self) -> None:
        """Let interrupted children finish their own cleanup, then kill what is left."""
        live = [child for child in self._children if child.poll() is None]
        for child in live:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
        deadline = time.monotonic() + CHILD_GRACE_S
        for child in live:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()

    def _engine_reachable(self) -> bool:
        try:
            self.docker().ping()
        except Exception:
            return False
        return True


def _store_id(home: Path) -> str | None:
    db = home / "runner.db"
    if not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def force_rmtree(path: Path) -> None:
    """rm -rf that also gets through read-only directories (artifact versions are made read-only)."""
    if not path.exists() and not path.is_symlink():
        return

    def make_writable(func: Any, failed: str, _exc: Any) -> None:
        parent = os.path.dirname(failed)
        with contextlib.suppress(OSError):
            os.chmod(parent, stat.S_IRWXU)
            os.chmod(failed, stat.S_IRWXU)
        with contextlib.suppress(OSError):
            func(failed)

    shutil.rmtree(path, onerror=make_writable)
