"""Foreground signals, and the engine requests they must not cut in half.

`runner create` in the foreground turns SIGINT, SIGTERM and SIGHUP into `Signalled` (a KeyboardInterrupt,
so cleanup code that handles Ctrl-C handles them all). Raised while `POST /containers/create` is in
flight, it would leave the engine to finish a container after the command had cleaned up: one nobody
knows about. So requests that make engine objects run `protected()`: a signal arriving inside is held
and raised when the section ends, once the object's id is known and cleanup can find it. The sections
are short (a create ~20 ms, a start ~250 ms); long work (builds, imports) stays interruptible.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

FOREGROUND_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Signalled(KeyboardInterrupt):
    """A foreground signal, raised as KeyboardInterrupt is for SIGINT; exit code 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_depth = 0
_held: list[int] = []


def raise_or_hold(signum: int, frame: FrameType | None = None) -> None:
    """The signal handler `foreground()` installs."""
    if _depth:
        _held.append(signum)
        return
    raise Signalled(signum)


@contextmanager
def protected() -> Iterator[None]:
    """Hold foreground signals until the section ends (nothing happens when none is installed)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if not _depth and _held:
        signum = _held[0]
        _held.clear()
        raise Signalled(signum)


@contextmanager
def handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """`handler` for SIGINT, SIGTERM and SIGHUP inside the block; the previous handlers after it."""
    previous = {sig: signal.signal(sig, handler) for sig in FOREGROUND_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def foreground() -> Iterator[None]:
    """Foreground signals raise `Signalled` (or are held inside `protected()` sections)."""
    try:
        with handling(raise_or_hold):
            yield
    finally:
        _held.clear()
