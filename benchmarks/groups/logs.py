"""`runner logs` over 100 MiB of output vs `docker logs` of the same container.

The step prints 100 MiB in 100-byte lines, then a marker, then sleeps (the run stays live, so
`runner logs` streams from the engine like `docker logs` does). runner caps the engine-side log
at 2 × 25 MB json-file, so the engine keeps only the newest part: both commands read what is
there, and the bytes each delivered are counted once (untimed) to report MiB/s.
After the run is terminated its log lives in the run directory; reading that is reported too,
next to `cat` of the same file.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence

from benchmarks.context import BenchContext
from benchmarks.fixtures import manifests
from benchmarks.groups import Group
from benchmarks.harness import HarnessError, Stats, Trial, interleave, run, timed
from benchmarks.results import Row, at_least, fmt_ratio, ratio

MiB = 1 << 20
OUTPUT_BYTES = 100 * MiB
THROUGHPUT_TARGET = 0.8


def measure(ctx: BenchContext) -> list[Row]:
    home = ctx.new_home("logs")
    manifest = manifests.write(ctx.new_dir("logs"), "logs", manifests.logs_manifest(OUTPUT_BYTES))
    created = json.loads(run(ctx.runner("create", "-f", manifest, "--json"), env=home.env).stdout)
    run_id = str(created["id"])
    container = f"runner-{run_id}"
    ctx.say("waiting for the step to print 100 MiB (not measured)")
    ctx.wait_log_line(container, manifests.LOGS_DONE, timeout_s=600)
    docker_argv, runner_argv = ["docker", "logs", container], ctx.runner("logs", run_id)
    docker_bytes, runner_bytes = _count(docker_argv, None), _count(runner_argv, home.env)
    samples = interleave([Trial("docker logs", lambda: timed(docker_argv)),
                          Trial("runner logs", lambda: timed(runner_argv, env=home.env))],
                         repetitions=ctx.reps(5, 2), warmup=1, progress=ctx.say)
    tail = interleave([Trial("docker", lambda: timed([*docker_argv, "--tail", "100"])),
                       Trial("runner", lambda: timed([*runner_argv, "--tail", "100"], env=home.env))],
                      repetitions=ctx.reps(5, 2), warmup=1)
    run(ctx.runner("terminate", run_id, "--grace", "0"), env=home.env, timeout=300)
    log_file = home.home / "runs" / run_id / "logs" / "container.log"
    persisted = interleave([Trial("cat", lambda: timed(["cat", log_file])),
                            Trial("runner", lambda: timed(runner_argv, env=home.env))],
                           repetitions=ctx.reps(5, 2), warmup=1)
    persisted_bytes = log_file.stat().st_size
    runner_rate = _rate(runner_bytes, samples["runner logs"])
    docker_rate = _rate(docker_bytes, samples["docker logs"])
    rate_ratio = runner_rate.median / docker_rate.median
    return [
        Row("logs", f"`runner logs` (live), {runner_bytes / MiB:.1f} MiB delivered", runner_rate,
            f"docker logs, {docker_bytes / MiB:.1f} MiB", docker_rate, f"{fmt_ratio(rate_ratio)} throughput",
            f"≥ {THROUGHPUT_TARGET}×", at_least(rate_ratio, THROUGHPUT_TARGET), unit="MiB/s",
            note=f"wall {Stats.of(samples['runner logs']).median:.2f} s vs "
                 f"{Stats.of(samples['docker logs']).median:.2f} s; the step printed {OUTPUT_BYTES / MiB:.0f} MiB, "
                 "the engine keeps the newest ≤ 2 × 25 MB of json-file log"),
        Row("logs", "`runner logs --tail 100` (live)", Stats.of(tail["runner"]), "docker logs --tail 100",
            Stats.of(tail["docker"]), fmt_ratio(ratio(Stats.of(tail["runner"]), Stats.of(tail["docker"])))),
        Row("logs", f"`runner logs` (ended run, {persisted_bytes / MiB:.1f} MiB persisted)",
            _rate(persisted_bytes, persisted["runner"]), "cat of the persisted file",
            _rate(persisted_bytes, persisted["cat"]),
            f"{fmt_ratio(Stats.of(persisted['cat']).median / Stats.of(persisted['runner']).median)} throughput",
            unit="MiB/s"),
    ]


def _rate(size: int, seconds: Sequence[float]) -> Stats:
    return Stats.of([size / MiB / s for s in seconds])


def _count(argv: Sequence[str], env: Mapping[str, str] | None) -> int:
    """Bytes a command writes to stdout (the step prints to stdout only)."""
    child_env = dict(env) if env is not None else None
    with subprocess.Popen(list(argv), env=child_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as child:
        assert child.stdout is not None
        total = 0
        while chunk := child.stdout.read(1 << 20):
            total += len(chunk)
    if child.returncode != 0:
        raise HarnessError(f"`{' '.join(argv)}` exited {child.returncode}")
    return total


GROUP = Group("logs", "Logs throughput", "#7", measure)
