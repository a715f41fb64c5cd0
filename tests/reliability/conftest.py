"""The reliability tier (reliability.md R1–R17, S1–S13) on the real engine.

It reuses the integration tier's harness instead of copying it: `kit` (a fresh RUNNER_HOME driven
through the real CLI, with the leftover check by store label at teardown) and `wait_for` come from
tests/integration/conftest.py, `runkit` from tests/integration/runkit.py. Every test here is marked
`docker`.

Figures: a test records what it did with the `figures` fixture (`figures.add("R1", faults_injected=38,
faults_survived=38)`). When RUNNER_RELIABILITY_REPORT=PATH is set, the figures of the session are
appended to that JSON file (a list of {"test", "row", counts…}); scripts/reliability_report.py turns them,
with pytest's junit XML, into docs/reliability.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
REPORT_ENV = "RUNNER_RELIABILITY_REPORT"

if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))  # runkit, artifact_support


def _load_integration_conftest() -> Any:
    spec = importlib.util.spec_from_file_location("reliability_integration_fixtures", INTEGRATION / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_integration = _load_integration_conftest()
kit = _integration.kit
wait_for = _integration.wait_for

_FIGURES: list[dict[str, Any]] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.docker)


class Figures:
    """Counts one test contributes to docs/reliability.md."""

    def __init__(self, test: str) -> None:
        self.test = test

    def add(self, row: str, **counts: int | float | str) -> None:
        _FIGURES.append({"test": self.test, "row": row, **counts})


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path or not _FIGURES:
        return
    target = Path(path)
    existing: list[dict[str, Any]] = []
    if target.exists():
        try:
            existing = json.loads(target.read_text())
        except ValueError:
            existing = []
    target.write_text(json.dumps(existing + _FIGURES, indent=1))
