"""Time-to-ready of an HTTP manifest: `runner create --wait` until the first 200, vs `docker run` + a polling loop.

The baseline is what a careful user scripts by hand: pick a free port, `docker run -d -p`
busybox httpd, then GET every 20 ms until it answers 200. The candidate is timed from the start
of `runner create --wait` to a 200 from the endpoint runner reports (checked once it returns).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse

from benchmarks.context import BUSYBOX, BenchContext
from benchmarks.fixtures import manifests
from benchmarks.groups import Group
from benchmarks.harness import HarnessError, Stats, Trial, interleave, run, timed_output
from benchmarks.results import Row, at_most, fmt_ratio, ratio

READY_RATIO_TARGET = 1.2
POLL_S = 0.02
READY_TIMEOUT_S = 60.0


def measure(ctx: BenchContext) -> list[Row]:
    home = ctx.new_home("ready")
    manifest = manifests.write(ctx.new_dir("ready"), "http", manifests.http_manifest())

    def baseline() -> float:
        port = _free_port()
        started = time.perf_counter()
        _, out = timed_output(["docker", "run", "-d", "--init", *ctx.label_args(), "-p", f"127.0.0.1:{port}:8080",
                               BUSYBOX, "sh", "-c", manifests.HTTPD_SCRIPT])
        _poll_until_200("127.0.0.1", port)
        seconds = time.perf_counter() - started
        run(["docker", "rm", "-f", out.decode().strip()])
        return seconds

    def candidate() -> float:
        started = time.perf_counter()
        argv = ctx.runner("create", "-f", manifest, "--name", ctx.unique("bench-http-"), "--wait", "--json")
        _, out = timed_output(argv, env=home.env)
        record = json.loads(out)
        url = urllib.parse.urlsplit(str((record.get("endpoints") or {}).get("web") or ""))
        if not record.get("ready") or not url.port:
            raise HarnessError(f"runner create --wait returned without a ready endpoint: {record}")
        _poll_until_200(url.hostname or "127.0.0.1", url.port)
        seconds = time.perf_counter() - started
        run(ctx.runner("terminate", str(record["id"]), "--grace", "0"), env=home.env)
        return seconds

    samples = interleave([Trial("docker", baseline), Trial("runner", candidate)],
                         repetitions=ctx.reps(8, 3), warmup=1, progress=ctx.say)
    runner_stats, docker_stats = Stats.of(samples["runner"]), Stats.of(samples["docker"])
    value = ratio(runner_stats, docker_stats)
    return [Row("ready", "time-to-ready, `runner create --wait` → first 200", runner_stats,
                "docker run -d + GET every 20 ms", docker_stats, fmt_ratio(value),
                f"≤ {READY_RATIO_TARGET}×", at_most(value, READY_RATIO_TARGET))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _poll_until_200(host: str, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(host, port, timeout=2)
        try:
            connection.request("GET", "/")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(POLL_S)
    raise HarnessError(f"http://{host}:{port}/ did not answer 200 within {READY_TIMEOUT_S:g}s")


GROUP = Group("ready", "Time to ready (HTTP)", "#7", measure)
