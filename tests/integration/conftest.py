"""Integration-tier helpers (real Docker engine). The engine, image and label fixtures live in
tests/conftest.py because tests/e2e/ needs them too.

Rule for this tier: wait for Docker state by polling with a deadline (`wait_for`), never a bare sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import pytest


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
