"""A new user's first run, through the installed `runner` binary with a fresh RUNNER_HOME: a busybox
httpd manifest with an http port comes up with `create --wait`, the printed URL serves the page,
`terminate` leaves no container, and `logs` and `list` still tell the story afterwards.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

RUNNER = Path(sys.executable).with_name("runner")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def user_env(tmp_path: Path, busybox_image: str, purge_label: Callable[[str], list[str]]) -> Iterator[dict[str, str]]:
    """A shell environment with a fresh RUNNER_HOME; whatever the store leaves in the engine is a failure."""
    home = tmp_path / "runner-home"
    env = {**os.environ, "RUNNER_HOME": str(home)}
    yield env
    if (home / "runner.db").exists():
        with sqlite3.connect(home / "runner.db") as conn:
            store = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0]
        conn.close()
        left = purge_label(f"ai.runner.store={store}")
        assert left == [], f"the run left {left} in the engine"


def runner(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUNNER), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_first_http_run_as_a_new_user(tmp_path: Path, user_env: dict[str, str], busybox_image: str,
                                      docker_client: docker.DockerClient) -> None:
    port = _free_port()
    (tmp_path / "hello-web.yaml").write_text(f"""\
name: hello-web
description: my first page
resources:
  preset: cpu-small
image: {busybox_image}
run:
  - command: |
      mkdir -p /www
      echo "<h1>hello from my first run</h1>" > /www/index.html
      echo "serving on {port}"
      exec httpd -f -v -p {port} -h /www
ports:
  - name: web
    type: http
    port: {port}
""")
    created = runner(user_env, "create", "-f", "hello-web.yaml", "--wait", cwd=tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr
    match = re.search(r"(http://127\.0\.0\.1:\d+)", created.stdout)
    assert match, f"create --wait prints the URL:\n{created.stdout}"
    url = match.group(1)
    run_id = re.search(r"run ([0-9a-f]+) \(hello-web\): running", created.stdout)
    assert run_id, created.stdout
    run_id_text = run_id.group(1)

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.read().decode() == "<h1>hello from my first run</h1>\n"

    listed = runner(user_env, "list", cwd=tmp_path)
    assert listed.returncode == 0 and "running" in listed.stdout and url in listed.stdout

    stopped = runner(user_env, "terminate", run_id_text, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "terminated" in stopped.stdout
    assert docker_client.containers.list(all=True, filters={"name": f"runner-{run_id_text}"}) == []

    logs = runner(user_env, "logs", run_id_text, cwd=tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert f"serving on {port}" in logs.stdout and "response:200" in logs.stdout

    final = runner(user_env, "list", cwd=tmp_path)
    assert final.returncode == 0
    row = next(line for line in final.stdout.splitlines() if line.startswith(run_id_text))
    assert row.split()[1:3] == ["hello-web", "terminated"]
