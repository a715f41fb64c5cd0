"""Removing a run's engine objects (containers, volumes) by label: shared by create, finalize and reconcile."""

from __future__ import annotations

from runner.backends.docker import DockerBackend
from runner.backends.spec import LABEL_RUN_ID, LABEL_STORE


def remove_run_objects(backend: DockerBackend, store_id: str, run_id: str) -> None:
    """Remove the run's container(s) and volumes, found by label."""
    for container in backend.list_managed(store_id, run_id):
        backend.remove_container(container.id)
    for volume in backend.list_volumes([f"{LABEL_RUN_ID}={run_id}", f"{LABEL_STORE}={store_id}"]):
        backend.remove_volume(str(volume.get("Name")))
