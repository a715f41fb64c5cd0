"""`runner create` of a one-step `sleep` manifest vs `docker run -d`; `runner terminate` vs `docker stop` + `docker rm`.

The baseline container gets what runner gives its own where it matters for timing (`--init`,
the same image and command), so the difference is runner's own work: planning, the store,
the entrypoint files it copies in, and its engine calls. Each round: docker run, runner create,
docker stop + rm, runner terminate; the overhead is the median of the per-round differences.
"""

from __future__ import annotations

import json

from benchmarks.context import BUSYBOX, BenchContext
from benchmarks.fixtures import manifests
from benchmarks.groups import Group
from benchmarks.harness import HarnessError, Stats, Trial, interleave, paired_differences, timed, timed_output
from benchmarks.results import Row, at_most, fmt_delta, fmt_ratio, ratio

CREATE_OVERHEAD_TARGET_S = 0.3


def measure(ctx: BenchContext) -> list[Row]:
    home = ctx.new_home("lifecycle")
    manifest = manifests.write(ctx.new_dir("lifecycle"), "sleep", manifests.sleep_manifest())
    containers: list[str] = []
    runs: list[str] = []

    def docker_run() -> float:
        seconds, out = timed_output(["docker", "run", "-d", "--init", *ctx.label_args(), BUSYBOX, "sleep", "300"])
        containers.append(out.decode().strip())
        return seconds

    def runner_create() -> float:
        argv = ctx.runner("create", "-f", manifest, "--name", ctx.unique("bench-create-"), "--json")
        seconds, out = timed_output(argv, env=home.env)
        record = json.loads(out)
        if record.get("status") != "running":
            raise HarnessError(f"runner create ended {record.get('status')}: {record.get('reason')}")
        runs.append(str(record["id"]))
        return seconds

    def docker_stop_rm() -> float:
        container = containers.pop()
        return timed(["docker", "stop", container]) + timed(["docker", "rm", container])

    def runner_terminate() -> float:
        return timed(ctx.runner("terminate", runs.pop()), env=home.env)

    samples = interleave([Trial("docker run -d", docker_run), Trial("runner create", runner_create),
                          Trial("docker stop + rm", docker_stop_rm), Trial("runner terminate", runner_terminate)],
                         repetitions=ctx.reps(10, 3), warmup=1, progress=ctx.say)
    create, docker = Stats.of(samples["runner create"]), Stats.of(samples["docker run -d"])
    overhead = Stats.of(paired_differences(samples["runner create"], samples["docker run -d"]))
    stop, remove = Stats.of(samples["runner terminate"]), Stats.of(samples["docker stop + rm"])
    stop_overhead = Stats.of(paired_differences(samples["runner terminate"], samples["docker stop + rm"]))
    return [
        Row("lifecycle", "`runner create` (one `sleep` step)", create, "docker run -d --init", docker,
            f"{fmt_delta(overhead.median)} ({fmt_ratio(ratio(create, docker))})",
            f"overhead ≤ +{CREATE_OVERHEAD_TARGET_S} s", at_most(overhead.median, CREATE_OVERHEAD_TARGET_S),
            note=f"per-round overhead {overhead.low:+.3f}…{overhead.high:+.3f} s"),
        Row("lifecycle", "`runner terminate` (exports none)", stop, "docker stop + docker rm", remove,
            f"{fmt_delta(stop_overhead.median)} ({fmt_ratio(ratio(stop, remove))})",
            note="includes persisting the logs into the run directory"),
    ]


GROUP = Group("lifecycle", "Create and terminate", "#3, #7", measure)
