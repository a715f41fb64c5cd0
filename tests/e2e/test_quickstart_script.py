"""`make quickstart` as a new user runs it: scripts/quickstart.sh with a fresh RUNNER_HOME and no API_KEY (so it
generates one into the secret store), then the curl and openai commands it prints, pasted into another shell
exactly as printed, then the stop command it prints.

The shells that run the printed commands get no RUNNER_HOME: a new user pastes them into another terminal, so
they must not depend on the environment the script ran in. The demo base is the local `runner-demo-base:1`
(no registry here); the demo image and its base are shared with the quickstart and stay.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, ImageNotFound

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "quickstart.sh"
RUNNER = REPO / ".venv" / "bin" / "runner"
DEMO_BASE = "runner-demo-base:1"
DEMO_IMAGE = "runner-demo:quickstart"


def printed_command(output: str, first: str, last: str) -> str:
    """The block of `output` from the line starting with `first` through the next line matching `last`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(first))
    end = next(i for i in range(start, len(lines)) if re.search(last, lines[i]))
    return "\n".join(lines[start:end + 1])


@pytest.fixture
def new_user(tmp_path: Path, docker_client: docker.DockerClient, python_image: str,
             purge_label: Callable[[str], list[str]]) -> Iterator[dict[str, str]]:
    """The environment of a new user's shell, with a fresh RUNNER_HOME; cleans the store's objects after."""
    try:
        docker_client.images.get(DEMO_BASE)
    except ImageNotFound:
        docker_client.images.get(python_image).tag(DEMO_BASE)
    before = _image_id(docker_client, DEMO_IMAGE)
    home = tmp_path / "runner-home"
    env = {name: value for name, value in os.environ.items() if name not in ("API_KEY", "RUNNER_BIN")}
    env.update(RUNNER_HOME=str(home), RUNNER_DEMO_BASE=DEMO_BASE)
    yield env
    if (home / "runner.db").exists():
        with sqlite3.connect(home / "runner.db") as conn:
            store = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0]
        for run in json.loads(subprocess.run([RUNNER, "list", "--json"], env=env, capture_output=True,
                                             text=True, check=True).stdout):
            subprocess.run([RUNNER, "terminate", run["id"]], env=env, capture_output=True, check=False)
        left = purge_label(f"ai.runner.store={store}")
        assert left == [], f"the quickstart run left {left}"
    # The script rebuilds the shared demo image when the repository changed: drop the image it orphaned.
    if before is not None and before != _image_id(docker_client, DEMO_IMAGE):
        with contextlib.suppress(ImageNotFound, APIError):
            if not docker_client.images.get(before).tags:
                docker_client.images.remove(before)


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except ImageNotFound:
        return None


def test_make_quickstart_then_the_printed_examples_work(new_user: dict[str, str]) -> None:
    done = subprocess.run([str(SCRIPT)], cwd=REPO, env=new_user, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, f"quickstart.sh exited {done.returncode}:\n{done.stderr}\n{done.stdout}"
    assert "API key: generated into the secret store" in done.stderr, done.stderr
    run_id = re.search(r"^Run ([0-9a-f]+) \(quickstart\) is running\.$", done.stdout, re.M)
    assert run_id, done.stdout
    key_file = subprocess.run([RUNNER, "secret", "path", "API_KEY"], env=new_user, capture_output=True, text=True,
                              check=True).stdout.strip()
    key = Path(key_file).read_text()
    assert len(key) >= 32 and key not in done.stdout + done.stderr, "the key must never be printed"

    elsewhere = {name: value for name, value in new_user.items() if name != "RUNNER_HOME"}
    curl = printed_command(done.stdout, "curl ", r"^\s*-d ")
    answer = subprocess.run(["bash", "-c", curl], env=elsewhere, capture_output=True, text=True, timeout=60,
                            check=False)
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert body["object"] == "chat.completion", body
    assert body["choices"][0]["message"]["content"].strip(), body

    client = printed_command(done.stdout, "OPENAI_API_KEY=", r"^print\(\)'$")
    streamed = subprocess.run(["bash", "-c", client], env=elsewhere, capture_output=True, text=True, timeout=60,
                              check=False)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip(), "the openai example should print the streamed reply"

    stop = re.search(r"^\s*Stop \(exports the cache artifact\):\s+(.+)$", done.stdout, re.M)
    assert stop and stop.group(1).endswith(f"terminate {run_id.group(1)}"), done.stdout
    stopped = subprocess.run(["bash", "-c", stop.group(1)], env=new_user, capture_output=True, text=True,
                             timeout=120, check=False)
    assert stopped.returncode == 0, stopped.stderr
    assert "terminated" in stopped.stdout, stopped.stdout
