"""What a group reports: rows of (measurement, baseline, comparison, target, verdict).

A MISS is a finding, not an error: it is reported and the suite carries on (exit 0). ERROR means
the harness could not measure (exit 1); SKIP means the thing does not exist yet; INFO rows are
context without a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmarks.harness import Stats

Verdict = Literal["PASS", "MISS", "INFO", "SKIP", "ERROR"]
Unit = Literal["s", "MiB/s", "count"]


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    candidate: Stats | None = None
    baseline_name: str = ""
    baseline: Stats | None = None
    comparison: str = ""  # e.g. "1.23×", "+0.41 s"
    target: str = ""  # e.g. "≤ 0.25 s"
    verdict: Verdict = "INFO"
    note: str = ""
    unit: Unit = "s"


def at_most(value: float, limit: float) -> Verdict:
    return "PASS" if value <= limit else "MISS"


def at_least(value: float, limit: float) -> Verdict:
    return "PASS" if value >= limit else "MISS"


def ratio(candidate: Stats, baseline: Stats) -> float:
    """Ratio of medians (candidate / baseline)."""
    return candidate.median / baseline.median if baseline.median > 0 else float("inf")


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}×"


def fmt_delta(seconds: float) -> str:
    return f"{'+' if seconds >= 0 else '−'}{abs(seconds):.3f} s"


def fmt_value(value: float, unit: Unit) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MiB/s":
        return f"{value:.0f} MiB/s"
    return f"{value:g}"


def fmt_stats(stats: Stats | None, unit: Unit = "s") -> str:
    if stats is None:
        return "—"
    if unit == "count" or stats.n == 1:
        return fmt_value(stats.median, unit) + ("" if unit == "count" else " (n=1)")
    return f"{fmt_value(stats.median, unit)} ({fmt_value(stats.low, unit)}–{fmt_value(stats.high, unit)})"


def error_row(group: str, message: str) -> Row:
    return Row(group=group, name="(group failed)", verdict="ERROR", note=message)


def skip_row(group: str, name: str, message: str) -> Row:
    return Row(group=group, name=name, verdict="SKIP", note=message)
