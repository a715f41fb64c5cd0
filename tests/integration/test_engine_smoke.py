"""Smoke test for the Docker-tier fixtures: the engine answers, the busybox image runs, and removal by
the per-test label leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest


def _labelled(client: docker.DockerClient, selector: str) -> dict[str, list[str]]:
    filters = {"label": selector}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=filters)],
        "volumes": [v.name for v in client.volumes.list(filters=filters)],
        "networks": [n.name for n in client.networks.list(filters=filters)],
    }


def test_busybox_echo_logs(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    busybox_image: str,
    test_labels: dict[str, str],
):
    assert request.node.get_closest_marker("docker") is not None, "tests/conftest.py should mark this tier"
    container = docker_client.containers.run(
        busybox_image, ["echo", "hello"], detach=True, labels=test_labels
    )

    assert container.wait(timeout=60)["StatusCode"] == 0
    assert container.logs() == b"hello\n"


def test_purge_by_label_leaves_nothing(
    docker_client: docker.DockerClient,
    busybox_image: str,
    test_label: str,
    test_labels: dict[str, str],
    purge_label: Callable[[str], list[str]],
    wait_for,
):
    network = docker_client.networks.create(
        f"runner-smoke-{test_labels['ai.runner.test'][:12]}", labels=test_labels
    )
    volume = docker_client.volumes.create(labels=test_labels)
    # A running container attached to both: removal must force-stop it first.
    running = docker_client.containers.run(
        busybox_image,
        ["sleep", "300"],
        detach=True,
        labels=test_labels,
        network=network.name,
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
    )
    exited = docker_client.containers.run(busybox_image, ["true"], detach=True, labels=test_labels)

    def is_running() -> bool:
        running.reload()
        return running.status == "running"

    wait_for(is_running, what="the sleep container to run")
    exited.wait(timeout=60)

    before = _labelled(docker_client, test_label)
    assert sorted(before["containers"]) == sorted([running.name, exited.name])
    assert before["volumes"] == [volume.name]
    assert before["networks"] == [network.name]

    removed = purge_label(test_label)

    assert len(removed) == 4
    assert _labelled(docker_client, test_label) == {"containers": [], "volumes": [], "networks": []}
    # Idempotent: the fixture's own teardown purges again and must find nothing to do.
    assert purge_label(test_label) == []
