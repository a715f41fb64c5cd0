"""runner's own Prometheus metrics: runs by status, time-to-ready and phase durations, exports,
and per-run container CPU and memory read from the engine at scrape time.

A custom collector computes everything from the run store on each scrape (no state of its own,
so several exporters or restarts never disagree). Metric names use the `runner_` prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runner.engine.context import Engine
from runner.errors import UsageError
from runner.store import ALL_STATUSES, RunRecord

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
PHASES = ("image", "imports", "start", "ready", "export")


def histogram_buckets(values: Iterable[float]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) pairs including +Inf, and the sum."""
    data = sorted(values)
    buckets = [(str(bound), float(sum(1 for v in data if v <= bound))) for bound in DURATION_BUCKETS]
    buckets.append(("+Inf", float(len(data))))
    return buckets, float(sum(data))


class RunCollector:
    """A prometheus_client collector over the run store and the engine."""

    def __init__(self, engine: Engine, *, container_stats: bool = True) -> None:
        self.engine = engine
        self.container_stats = container_stats

    def describe(self) -> list[Any]:
        return []  # computed per scrape; no fixed description needed for registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        records = self._records()
        by_status = GaugeMetricFamily("runner_runs", "Runs by status", labels=["status"])
        for status in ALL_STATUSES:
            by_status.add_metric([status], float(sum(1 for r in records if r.status == status)))
        yield by_status
        ready = [r.ready_at - r.created_at for r in records if r.ready_at]
        buckets, total = histogram_buckets(ready)
        yield HistogramMetricFamily("runner_time_to_ready_seconds", "Create → every http port answering",
                                    buckets=buckets, sum_value=total)
        phases = HistogramMetricFamily("runner_phase_duration_seconds", "Duration of each run phase",
                                       labels=["phase"])
        for phase in PHASES:
            values = [p["end"] - p["start"] for r in records for name, p in r.phases.items() if name == phase]
            buckets, total = histogram_buckets(values)
            phases.add_metric([phase], buckets, total)
        yield phases
        yield from self._exports(records, CounterMetricFamily)
        yield from self._containers(records, CounterMetricFamily, GaugeMetricFamily)

    def _records(self) -> list[RunRecord]:
        if not self.engine.home.db_path.exists():
            return []
        return self.engine.store().records(include_ended=True)

    @staticmethod
    def _exports(records: list[RunRecord], family: Any) -> Iterator[Any]:
        counter = family("runner_exports", "Artifact exports by result", labels=["result"])
        done = [e for r in records for e in r.details.get("exports_done") or []]
        counter.add_metric(["published"], float(sum(1 for e in done if e.get("version"))))
        counter.add_metric(["failed"], float(sum(1 for e in done if e.get("error"))))
        yield counter

    def _containers(self, records: list[RunRecord], counter: Any, gauge: Any) -> Iterator[Any]:
        cpu = counter("runner_container_cpu_seconds", "Container CPU time used", labels=["run_id", "name"])
        memory = gauge("runner_container_memory_bytes", "Container memory in use", labels=["run_id", "name"])
        if self.container_stats:
            for record in records:
                if record.status not in ("running", "idle") or not record.container_id:
                    continue
                stats = self.engine.backend().stats(record.container_id)
                if not stats:
                    continue
                usage = (stats.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage", 0)
                cpu.add_metric([record.id, record.name], usage / 1e9)
                memory.add_metric([record.id, record.name], float((stats.get("memory_stats") or {}).get("usage", 0)))
        yield cpu
        yield memory


def serve(engine: Engine, host: str, port: int) -> Any:
    """Start the exporter on a daemon thread; returns the server (call `.shutdown()` to stop)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(engine))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def run_forever(engine: Engine, host: str, port: int, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until interrupted; a port that cannot be bound is a usage error, not a crash."""
    try:
        server = serve(engine, host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="pick another --port (or stop whatever listens there)") from None
    if on_ready is not None:
        on_ready()
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
