"""Rendering engine events and tables for people: phases on stderr, pull progress, aligned columns.

Plain text when stderr is not a terminal (CI logs stay readable); a rich progress bar for long
transfers when it is. rich is imported only when a progress bar is actually needed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from runner.engine.events import Event, Notice, PhaseFinished, PhaseStarted, Progress

PROGRESS_LINE_EVERY_S = 5.0


class EventPrinter:
    """An `EventSink` that writes to stderr; quiet mode keeps only warnings."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._layers: dict[str, tuple[int, int | None]] = {}
        self._last_line = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice):
            if event.level in ("warning", "note"):
                click.echo(f"{event.level}: {event.text}", err=True)
            elif not self.quiet:
                click.echo(f"  {event.text}", err=True)
        elif self.quiet:
            return
        elif isinstance(event, PhaseStarted):
            click.echo(f"→ {event.phase}{': ' + event.detail if event.detail else ''}", err=True)
        elif isinstance(event, PhaseFinished):
            self._close_bar()
            if event.seconds >= 0.01:
                click.echo(f"✓ {event.phase} ({event.seconds:.2f}s)", err=True)
        elif isinstance(event, Progress):
            self._progress(event)

    def _progress(self, event: Progress) -> None:
        self._layers[event.key] = (event.current, event.total)
        done = sum(current for current, _ in self._layers.values())
        total = sum(t or 0 for _, t in self._layers.values())
        if self.tty:
            self._update_bar(event.phase, done, total)
        elif time.monotonic() - self._last_line >= PROGRESS_LINE_EVERY_S:
            self._last_line = time.monotonic()
            click.echo(f"  {event.phase}: {_mb(done)} of {_mb(total)} ({len(self._layers)} layers)", err=True)

    def _update_bar(self, phase: str, done: int, total: int) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, DownloadColumn, TransferSpeedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            transient=True)
            self._bar.start()
            self._task = self._bar.add_task(phase, total=total or None)
        self._bar.update(self._task, completed=done, total=total or None)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._layers.clear()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces (fast for thousands of rows)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return [fmt.format(*headers).rstrip()] + [fmt.format(*row).rstrip() for row in rows]


def format_time(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"
