"""A harness for driving the real `runner` CLI against the real engine, shared by the engine test files.

`RunKit` (the `kit` fixture in conftest.py) gives a test:
- `cli(...)`: `runner.cli.main.main([...])` in-process, output captured with capsys;
- `run(...)`: the installed `.venv/bin/runner` in a subprocess (when the process itself matters:
  signals, exit codes, "no runner process alive");
- `manifest(text)`: a manifest written into the test's tmp dir;
- engine views of this store's objects (by the `ai.runner.store` label), and at teardown the
  check that nothing of this store is left in the engine (containers and volumes), after which
  anything found is force-removed so one failing test cannot poison the next.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from runner.cli.main import main

RUNNER_BIN = Path(sys.executable).with_name("runner")
LABEL_STORE = "ai.runner.store"
LABEL_RUN_ID = "ai.runner.run-id"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return json.loads(self.out)


def free_port() -> int:
    """A loopback port nobody listens on right now (the engine may take it later; tests allow for that)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def listener(port: int = 0) -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1 holding `port` (0 = any) for the duration."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


BUSYBOX = "runner-test/busybox:1"


def batch(name: str, command: str, *, extra: str = "", resources: str = "{preset: cpu-small}") -> str:
    """A one-step busybox manifest running `command` (multi-line shell allowed)."""
    indented = "\n".join("              " + line for line in command.splitlines())
    return f"""
        name: {name}
        resources: {resources}
        image: {BUSYBOX}
        {extra}
        run:
          - command: |
{indented}
    """


def act_behind_the_runners_back(container: Any, action: str) -> int | None:
    """`rm` (force), `stop` or `kill` a run's container with docker-py, as a user might; the engine's exit
    code afterwards (None once removed)."""
    if action == "rm":
        container.remove(force=True)
        return None
    if action == "stop":
        container.stop(timeout=5)
    else:
        container.kill()
    container.wait(timeout=30)
    container.reload()
    return int(container.attrs["State"]["ExitCode"])


class RunKit:
    def __init__(self, home: Path, workdir: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch, client: docker.DockerClient) -> None:
        self.home = home
        self.workdir = workdir
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.client = client
        self._store_id: str | None = None
        self._manifests = 0

    # -- driving the CLI ------------------------------------------------------------------------
    def cli(self, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> Result:
        """`runner ARGS` in this process."""
        self.capsys.readouterr()
        with self.monkeypatch.context() as patch:
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            if stdin is not None:
                import io

                patch.setattr(sys, "stdin", io.StringIO(stdin))
            code = main(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120.0) -> Result:
        """The installed `runner ARGS` in a subprocess (RUNNER_HOME is this test's)."""
        done = subprocess.run([str(RUNNER_BIN), *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "RUNNER_HOME": str(self.home), **(env or {})})
        return Result(done.returncode, done.stdout, done.stderr)

    def manifest(self, text: str, name: str = "run.yaml") -> str:
        path = self.workdir / name
        path.write_text(textwrap.dedent(text).lstrip())
        return str(path)

    def create(self, text: str, *flags: str) -> dict[str, Any]:
        """`runner create -f MANIFEST --json FLAGS` that must succeed; returns its JSON."""
        self._manifests += 1
        result = self.cli("create", "-f", self.manifest(text, f"run-{self._manifests}.yaml"), "--json", *flags)
        assert result.code == 0, result.text
        created: dict[str, Any] = result.json()
        return created

    def describe(self, run: str) -> dict[str, Any]:
        result = self.cli("describe", run, "--json")
        assert result.code == 0, result.text
        described: dict[str, Any] = result.json()
        return described

    def listing(self, *flags: str) -> dict[str, dict[str, Any]]:
        """`runner list --all --json` keyed by run id."""
        result = self.cli("list", "--all", "--json", *flags)
        assert result.code == 0, result.text
        return {row["id"]: row for row in result.json()}

    # -- the engine's view ----------------------------------------------------------------------
    @property
    def store_id(self) -> str:
        if self._store_id is None:
            with self.store_connection() as conn:
                self._store_id = str(conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0])
        return self._store_id

    @contextmanager
    def store_connection(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the run store, for reading records without a reconciling command."""
        conn = sqlite3.connect(f"file:{self.home / 'runner.db'}?mode=ro", uri=True)
        try:
            yield conn
        finally:
            conn.close()

    def container(self, run_id: str) -> Any:
        """The run's container (docker-py), or None."""
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL_RUN_ID}={run_id}"})
        return found[0] if found else None

    def inspect(self, run_id: str) -> dict[str, Any]:
        container = self.container(run_id)
        assert container is not None, f"run {run_id} has no container"
        data: dict[str, Any] = self.client.api.inspect_container(container.id)
        return data

    def wait_exit(self, run_id: str, timeout: float = 60.0) -> int:
        """Block (engine-side, with a deadline) until the run's container exits; its exit code."""
        container = self.container(run_id)
        assert container is not None, f"run {run_id} has no container"
        return int(container.wait(timeout=timeout)["StatusCode"])

    def exec(self, run_id: str, command: str) -> str:
        container = self.container(run_id)
        assert container is not None
        code, output = container.exec_run(["sh", "-c", command])
        assert code == 0, output
        return str(output.decode())

    def leftovers(self) -> list[str]:
        """Every container and volume of this store still in the engine."""
        if not (self.home / "runner.db").exists():
            return []
        filters = {"label": f"{LABEL_STORE}={self.store_id}"}
        return ([f"container {c.name} ({c.status})" for c in self.client.containers.list(all=True, filters=filters)]
                + [f"volume {v.name}" for v in self.client.volumes.list(filters=filters)])

    def assert_clean(self) -> None:
        assert self.leftovers() == [], "the runner left objects of this store in the engine"

    def purge(self) -> list[str]:
        found = self.leftovers()
        if found:
            filters = {"label": f"{LABEL_STORE}={self.store_id}"}
            for container in self.client.containers.list(all=True, filters=filters):
                container.remove(force=True, v=True)
            for volume in self.client.volumes.list(filters=filters):
                volume.remove(force=True)
        return found

    def files_containing(self, needle: bytes, *, skip: tuple[str, ...] = ("secrets",)) -> list[str]:
        """Files under RUNNER_HOME (outside `skip`) whose bytes contain `needle`."""
        hits = []
        for path in self.home.rglob("*"):
            if path.is_file() and path.relative_to(self.home).parts[0] not in skip and needle in path.read_bytes():
                hits.append(str(path.relative_to(self.home)))
        return hits
