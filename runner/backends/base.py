"""What a backend reports back: engine facts, container state and summaries (no engine types leak out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.errors import EngineError

NVIDIA_RUNTIME = "nvidia"


class EngineNotFound(EngineError):
    """The engine answered 404 for the object asked about."""

    def __init__(self, status: int, message: str, action: str) -> None:
        super().__init__(f"Docker could not {action}: {message}")
        self.status = status
        self.engine_message = message


@dataclass(frozen=True)
class EngineInfo:
    address: str
    version: str
    runtimes: tuple[str, ...] = ()
    cdi_devices: tuple[str, ...] = ()
    live_restore: bool = False
    cpu_count: int = 0
    memory_bytes: int = 0

    @property
    def can_run_gpus(self) -> bool:
        """An NVIDIA runtime is registered, or CDI exposes NVIDIA devices."""
        return NVIDIA_RUNTIME in self.runtimes or any("nvidia" in device for device in self.cdi_devices)


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    status: str  # created | running | paused | restarting | removing | exited | dead
    running: bool
    exit_code: int | None
    oom_killed: bool
    error: str
    started_at: float | None
    finished_at: float | None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # "8000/tcp" → (host ip, host port)

    @property
    def ended(self) -> bool:
        return self.status in ("exited", "dead")


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    name: str
    state: str
    labels: Mapping[str, str]
    created: float
