"""The engine's shared context: where state lives, how to reach the backend, where events go.

Opened lazily: a command that never needs Docker never connects, and one that only reads never
creates RUNNER_HOME.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.engine.events import EventSink, PhaseFinished, PhaseStarted, ignore_events
from runner.home import RunnerHome
from runner.secrets import SecretStore
from runner.store import RunStore

if TYPE_CHECKING:
    from runner.backends.docker import DockerBackend  # imported when first needed: `list` may not need it


@dataclass
class Engine:
    home: RunnerHome
    events: EventSink = ignore_events
    _backend: DockerBackend | None = None
    _store: RunStore | None = None
    _writable: bool = field(default=False)
    _phases: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, events: EventSink = ignore_events) -> Engine:
        return cls(RunnerHome.from_env(), events)

    def backend(self) -> DockerBackend:
        if self._backend is None:
            from runner.backends.docker import DockerBackend

            self._backend = DockerBackend()
        return self._backend

    def store(self, *, create: bool = False) -> RunStore:
        """The run store; `create` (writers only) makes RUNNER_HOME and the database if missing."""
        if self._store is None or (create and not self._writable):
            if create:
                self.home.ensure()
            self._store = RunStore(self.home.db_path, create=create)
            self._writable = create
        return self._store

    def secrets(self) -> SecretStore:
        return SecretStore(self.home)

    @contextmanager
    def phase(self, run_id: str, name: str, detail: str = "") -> Iterator[None]:
        """Emit start/finish events and note the phase's timing (even when it fails).

        The timings are written with the run's next state change (`take_phases`), not one commit each.
        """
        self.events(PhaseStarted(name, detail))
        started = time.time()
        try:
            yield
        finally:
            ended = time.time()
            self._phases.setdefault(run_id, {})[name] = {"start": started, "end": ended}
            self.events(PhaseFinished(name, ended - started, detail))

    def take_phases(self, run_id: str) -> dict[str, dict[str, float]]:
        """Phase timings noted since the last call, for the next store update of the run."""
        return self._phases.pop(run_id, {})
