"""Foreground signals are held inside protected sections and raised when they end (runner/interrupts.py)."""

from __future__ import annotations

import os
import signal

import pytest

from runner.interrupts import Signalled, foreground, protected


def test_a_signal_outside_a_protected_section_interrupts_at_once() -> None:
    reached = []
    with foreground(), pytest.raises(Signalled) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the signal")
    assert raised.value.signum == signal.SIGTERM and reached == []
    assert isinstance(raised.value, KeyboardInterrupt)


def test_a_signal_inside_is_held_until_the_section_ends() -> None:
    steps = []
    with foreground(), pytest.raises(Signalled) as raised:
        with protected():
            os.kill(os.getpid(), signal.SIGHUP)
            steps.append("request finished")
            with protected():  # nested: still held
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("inner finished")
            steps.append("outer finished")
        steps.append("never")
    assert steps == ["request finished", "inner finished", "outer finished"]
    assert raised.value.signum == signal.SIGHUP  # the first one


def test_handlers_are_restored_and_nothing_stays_held() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with foreground():
        pass
    assert signal.getsignal(signal.SIGTERM) is before
    with protected():  # no foreground handler: a plain section
        pass
