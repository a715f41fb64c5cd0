"""Facts about this host that planning needs, gathered read-only: busy ports, artifact versions.

Kept apart from the planner so the planner stays pure: the same manifest and the same facts give
the same plan, and `create --dry-run` gathers exactly what `create` would.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable

from runner.home import RunnerHome
from runner.manifest.model import ArtifactSource, Manifest
from runner.plan.build import HostFacts
from runner.plan.volumes import ArtifactKey, ResolvedArtifact


def busy_loopback_ports(ports: Iterable[int]) -> frozenset[int]:
    """Ports some process already listens on at 127.0.0.1 (including Docker's 0.0.0.0 bindings)."""
    busy = set()
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    busy.add(port)
    return frozenset(busy)


def artifact_facts(manifest: Manifest, home: RunnerHome) -> dict[ArtifactKey, ResolvedArtifact]:
    """The version each artifact import/mount would see now (read-only; creates nothing)."""
    from runner.artifacts import ArtifactRef, ArtifactStore

    store = ArtifactStore(home.artifacts_dir)
    found: dict[ArtifactKey, ResolvedArtifact] = {}
    for volume in (*manifest.imports, *manifest.mounts):
        source = volume.source
        if not isinstance(source, ArtifactSource) or source.name is None or "{" in source.name:
            continue
        handle = store.resolve(ArtifactRef(source.kind, source.name, source.version))
        key = (source.kind, source.name, source.version)
        found[key] = (ResolvedArtifact(handle.number, handle.files_dir) if handle
                      else ResolvedArtifact(None, None))
    return found


def gather_host_facts(manifest: Manifest, home: RunnerHome) -> HostFacts:
    wanted = [port.port for port in manifest.ports if port.host_port is None]
    return HostFacts(
        cpu_count=os.cpu_count() or 1,
        busy_ports=busy_loopback_ports(wanted),
        artifacts=artifact_facts(manifest, home),
    )
