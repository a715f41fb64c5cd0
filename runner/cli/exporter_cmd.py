"""`runner exporter`: serve runner's own metrics for Prometheus (runs, readiness, phases, exports, containers)."""

from __future__ import annotations

import click

from runner.engine.context import Engine


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9400, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; metrics name your runs).")
def exporter(port: int, host: str) -> int:
    """Serve Prometheus metrics about runs at http://HOST:PORT/metrics until interrupted.

    \b
    Metrics: runner_runs{status}, runner_time_to_ready_seconds, runner_phase_duration_seconds{phase},
    runner_exports{result}, runner_container_cpu_seconds_total{run_id,name}, runner_container_memory_bytes{run_id,name}.
    """
    from runner.metrics import run_forever

    def announce() -> None:  # only once the port is bound: the line is what scripts wait for
        click.echo(f"serving runner metrics on http://{host}:{port}/metrics (Ctrl-C to stop)", err=True)

    run_forever(Engine.from_env(), host, port, on_ready=announce)
    return 0
