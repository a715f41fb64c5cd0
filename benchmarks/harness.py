"""Timing primitives: interleaved repetitions, robust summaries, and timed subprocesses.

Every comparison in the suite is a candidate (a runner command) next to a baseline (what a user
would do without runner) measured in the *same* process, interleaved round by round (A B A B …)
so that drift on the machine (other containers, page cache, CPU frequency) hits both alike.
Warm-up rounds run first and are discarded. Summaries are medians with min–max: the median is
robust to the odd scheduler hiccup on a 2-core machine, and the range shows how noisy it was.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 180.0


class HarnessError(Exception):
    """The benchmark could not measure something (a command failed, a fixture is missing)."""


@dataclass(frozen=True)
class Stats:
    """Median, minimum and maximum of n samples (seconds, or whatever unit the caller uses)."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise HarnessError("no samples to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass(frozen=True)
class Trial:
    """One thing to time per round: `run` does the work and returns the measured seconds.

    Trials time themselves so that untimed setup and teardown (removing a copied tree,
    terminating a run) can live in the same callable without polluting the sample.
    """

    name: str
    run: Callable[[], float]


def interleave(trials: Sequence[Trial], *, repetitions: int, warmup: int = 1,
               progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Run `warmup + repetitions` rounds of every trial in order; keep the last `repetitions`."""
    samples: dict[str, list[float]] = {trial.name: [] for trial in trials}
    for round_number in range(warmup + repetitions):
        for trial in trials:
            value = trial.run()
            if round_number >= warmup:
                samples[trial.name].append(value)
        if progress is not None:
            label = "warm-up" if round_number < warmup else f"round {round_number - warmup + 1}/{repetitions}"
            progress(label)
    return samples


def paired_differences(candidate: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-round candidate − baseline: the overhead with the round's drift cancelled."""
    return [c - b for c, b in zip(candidate, baseline, strict=True)]


def run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
        capture: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion; raise HarnessError (with its stderr) if it fails."""
    try:
        done = subprocess.run([str(a) for a in argv], env=dict(env) if env is not None else None,
                              stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"`{_show(argv)}` did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        raise HarnessError(f"`{_show(argv)}` exited {done.returncode}: {_tail(done.stderr)}")
    return done


def timed(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
          timeout: float = DEFAULT_TIMEOUT_S) -> float:
    """Wall-clock seconds of one command whose stdout goes to /dev/null (it must succeed)."""
    started = time.perf_counter()
    run(argv, env=env, timeout=timeout, capture=False)
    return time.perf_counter() - started


def timed_output(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> tuple[float, bytes]:
    """Wall-clock seconds and stdout of one command (it must succeed)."""
    started = time.perf_counter()
    done = run(argv, env=env, timeout=timeout)
    return time.perf_counter() - started, done.stdout


def _show(argv: Sequence[str | Path]) -> str:
    text = " ".join(str(a) for a in argv)
    return text if len(text) <= 160 else text[:157] + "..."


def _tail(stderr: bytes | None, limit: int = 600) -> str:
    text = (stderr or b"").decode("utf-8", "replace").strip()
    return text[-limit:] if text else "(no stderr)"
