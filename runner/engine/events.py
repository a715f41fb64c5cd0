"""Events the engine emits while it works; the CLI renders them (the core never prints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PhaseStarted:
    phase: str  # image | imports | start | ready | stopping | exports | logs
    detail: str = ""


@dataclass(frozen=True)
class PhaseFinished:
    phase: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    """Byte or item progress inside a phase (image layers, downloads, exports)."""

    phase: str
    key: str  # e.g. a layer id or a file name
    current: int
    total: int | None
    detail: str = ""


@dataclass(frozen=True)
class Notice:
    text: str
    level: str = "info"  # info (progress chatter) | note (worth saying even when quiet) | warning


Event = PhaseStarted | PhaseFinished | Progress | Notice
EventSink = Callable[[Event], None]


def ignore_events(_event: Event) -> None:
    """An `EventSink` that drops everything (tests, background work)."""
