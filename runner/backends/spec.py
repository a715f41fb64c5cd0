"""What a backend is asked to create: a container described without any manifest concepts.

The planner turns a `Manifest` into a `ContainerSpec`; backends turn a `ContainerSpec` into
engine objects. Backends never see a manifest, and these types never hold a secret value: secrets
travel as `ContainerFile`s built at create time from the `SecretBag`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

LABEL_PREFIX = "ai.runner."
LABEL_MANAGED = "ai.runner.managed"
LABEL_STORE = "ai.runner.store"
LABEL_RUN_ID = "ai.runner.run-id"
LABEL_SPEC_HASH = "ai.runner.spec-hash"
LABEL_VERSION = "ai.runner.version"
LABEL_NAME = "ai.runner.name"


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = "127.0.0.1"
    host_port: int | None = None  # None or 0 = an ephemeral port chosen by the engine


@dataclass(frozen=True)
class Mount:
    type: Literal["bind", "volume"]
    source: str  # host path (bind) or volume name (volume)
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class VolumeSpec:
    """A volume the backend creates for this run (overlay views of artifacts, NFS)."""

    name: str
    driver_opts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerFile:
    """A file placed into the container before it starts (entrypoint, step scripts, secrets)."""

    path: str  # absolute path in the container
    content: bytes = field(repr=False)
    mode: int = 0o644


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: tuple[str, ...] | None  # None = the image's CMD
    entrypoint: tuple[str, ...] | None = None  # None = the image's ENTRYPOINT
    env: tuple[tuple[str, str], ...] = ()  # never secrets
    labels: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    nano_cpus: int | None = None
    memory_bytes: int | None = None
    shm_size_bytes: int | None = None
    ipc_host: bool = False
    gpu_count: int = 0  # -1 = all
    init: bool = True
    stop_timeout_s: int = 10
    log_max_size: str = "50m"
    log_max_files: int = 2
    working_dir: str | None = None

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)
