"""Fixtures shared by every test tier, and the Docker-tier plumbing used by integration/ and e2e/.

- Tests under tests/integration/ and tests/e2e/ get the `docker` marker automatically.
- `docker_client`, `busybox_image`, `python_image`: skip when the engine or an image is missing, or
  fail instead when RUNNER_REQUIRE_DOCKER=1 (CI and `make test`), so a broken engine cannot pass as
  "all skipped".
- `test_label` / `test_labels`: a per-test label; everything carrying it is force-removed when the test
  ends, so tests attach it to every container, volume and network they create.
- `runner_home`: a fresh RUNNER_HOME per test.

docker-py is imported lazily so the unit tier never pays for it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    import docker

# Built by scripts/build-test-images.sh (`make images`); bump both places together.
BUSYBOX_IMAGE = "runner-test/busybox:1"
PYTHON_IMAGE = "runner-test/debian-python:1"

TEST_LABEL_KEY = "ai.runner.test"
REQUIRE_DOCKER_ENV = "RUNNER_REQUIRE_DOCKER"
DOCKER_TIERS = frozenset({"integration", "e2e"})
TESTS_DIR = Path(__file__).resolve().parent

LabelPurger = Callable[[str], list[str]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration/ and tests/e2e/ with `docker`."""
    for item in items:
        try:
            tier = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if tier in DOCKER_TIERS:
            item.add_marker(pytest.mark.docker)


def docker_required() -> bool:
    return os.environ.get(REQUIRE_DOCKER_ENV) == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when RUNNER_REQUIRE_DOCKER=1 says the Docker tier must run."""
    if docker_required():
        pytest.fail(f"{reason} ({REQUIRE_DOCKER_ENV}=1, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A docker-py client for the local engine (session-wide)."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    # requests' errors derive from OSError; docker-py wraps the rest in DockerException.
    except (DockerException, OSError) as exc:
        unavailable(f"Docker engine unreachable: {exc}; run `make engine`")
    try:
        yield client
    finally:
        client.close()


def _require_image(client: docker.DockerClient, tag: str) -> str:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
    except ImageNotFound:
        unavailable(f"test image {tag} is missing; run `make images`")
    return tag


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    """Tag of the busybox-static test image (tiny; /bin/sh, /tmp, /root, /var/www)."""
    return _require_image(docker_client, BUSYBOX_IMAGE)


@pytest.fixture(scope="session")
def python_image(docker_client: docker.DockerClient) -> str:
    """Tag of the Debian bookworm test image (python3, prometheus, curl, git, procps)."""
    return _require_image(docker_client, PYTHON_IMAGE)


@pytest.fixture(scope="session")
def purge_label(docker_client: docker.DockerClient) -> LabelPurger:
    """A function that force-removes every container, volume and network matching a label filter
    (``key=value``) and returns what it removed. Removing something already gone is not an error."""
    from docker.errors import NotFound

    def purge(selector: str) -> list[str]:
        filters = {"label": selector}
        removed: list[str] = []
        # Containers first: they hold the volumes and networks.
        for container in docker_client.containers.list(all=True, filters=filters):
            try:
                container.remove(force=True, v=True)
            except NotFound:
                continue
            removed.append(f"container {container.name}")
        for volume in docker_client.volumes.list(filters=filters):
            try:
                volume.remove(force=True)
            except NotFound:
                continue
            removed.append(f"volume {volume.name}")
        for network in docker_client.networks.list(filters=filters):
            try:
                network.remove()
            except NotFound:
                continue
            removed.append(f"network {network.name}")
        return removed

    return purge


@pytest.fixture
def test_label(purge_label: LabelPurger) -> Iterator[str]:
    """A label unique to this test, as ``ai.runner.test=<uuid>`` (a docker ``label`` filter).

    Attach it (see `test_labels`) to everything the test creates; on teardown every container,
    volume and network carrying it is force-removed."""
    selector = f"{TEST_LABEL_KEY}={uuid.uuid4().hex}"
    yield selector
    purge_label(selector)


@pytest.fixture
def test_labels(test_label: str) -> dict[str, str]:
    """`test_label` as a ``labels=`` mapping for docker-py create calls."""
    key, value = test_label.split("=", 1)
    return {key: value}


@pytest.fixture
def runner_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty RUNNER_HOME directory for this test."""
    home = tmp_path / "runner-home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("RUNNER_HOME", str(home))
    return home
