"""Integration-tier helpers (real Docker engine). The engine, image and label fixtures live in
tests/conftest.py because tests/e2e/ needs them too.

Rule for this tier: wait for Docker state by polling with a deadline (`wait_for`), never a bare sleep.
`kit` (runkit.py) drives the real `runner` CLI with a fresh RUNNER_HOME and fails a test that leaves
anything of its store in the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest
from runkit import RunKit

if TYPE_CHECKING:
    import docker


class WaitFor(Protocol):
    def __call__(self, condition: Callable[[], bool], *, what: str, timeout: float = ...) -> None: ...


def _wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    """Poll `condition` until it returns true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    interval = 0.05
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}", pytrace=False)
        time.sleep(interval)
        interval = min(interval * 2, 0.5)


@pytest.fixture
def wait_for() -> WaitFor:
    """``wait_for(condition, what="...", timeout=30)``: poll with a deadline instead of sleeping."""
    return _wait_for


@pytest.fixture
def kit(runner_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        docker_client: docker.DockerClient, busybox_image: str) -> Iterator[RunKit]:
    """A fresh RUNNER_HOME driven through the real CLI (see runkit.py). At teardown nothing of this
    store may be left in the engine: whatever is found is removed, and the test errors."""
    work = tmp_path / "work"
    work.mkdir()
    harness = RunKit(runner_home, work, capsys, monkeypatch, docker_client)
    yield harness
    left = harness.purge()
    if left:
        pytest.fail(f"left in the engine after the test (now removed): {left}", pytrace=False)
