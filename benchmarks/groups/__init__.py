"""Benchmark groups: each measures candidates next to their baselines and returns report rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.context import BenchContext
from benchmarks.results import Row


@dataclass(frozen=True)
class Group:
    name: str
    title: str
    issues: str  # which issues' targets it reports
    run: Callable[[BenchContext], list[Row]]


def all_groups() -> list[Group]:
    from benchmarks.groups import artifacts, cli, concurrency, gitimport, lifecycle, logs, quickstart, ready

    return [cli.GROUP, lifecycle.GROUP, ready.GROUP, artifacts.GROUP, gitimport.GROUP, logs.GROUP,
            concurrency.GROUP, quickstart.GROUP]
