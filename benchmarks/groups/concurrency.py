"""20 `runner create` in parallel (one store, one engine): wall time and failures, vs 20 parallel `docker run -d`.

All 20 processes start at once and race for the SQLite store (`BEGIN IMMEDIATE`, busy timeout)
and the engine. A failure is a non-zero exit or a run that is not `running` afterwards. The
runs are terminated with one `runner terminate` of all 20 ids, timed for context.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from benchmarks.context import BUSYBOX, BenchContext, RunnerEnv
from benchmarks.fixtures import manifests
from benchmarks.groups import Group
from benchmarks.harness import Stats, run, timed
from benchmarks.results import Row, at_most, fmt_ratio, ratio

PARALLEL = 20
FAILURE_TARGET = 0


def measure(ctx: BenchContext) -> list[Row]:
    home = ctx.new_home("concurrency")
    manifest = manifests.write(ctx.new_dir("concurrency"), "sleep", manifests.sleep_manifest())
    walls: dict[str, list[float]] = {"docker": [], "runner": [], "terminate": []}
    failures: list[str] = []
    for round_number in range(ctx.reps(3, 1)):
        seconds, _ = _parallel(ctx, [["docker", "run", "-d", "--init", *ctx.label_args(), BUSYBOX, "sleep", "300"]
                                     for _ in range(PARALLEL)], None)
        walls["docker"].append(seconds)
        ctx.release_session_containers()
        argvs = [ctx.runner("create", "-f", manifest, "--name", f"bench-par-{round_number}-{i}", "--json")
                 for i in range(PARALLEL)]
        seconds, outcomes = _parallel(ctx, argvs, home)
        walls["runner"].append(seconds)
        ids = _check(outcomes, failures)
        failures += _not_running(ctx, home, ids)
        if ids:
            walls["terminate"].append(timed(ctx.runner("terminate", *ids, "--grace", "0"), env=home.env, timeout=600))
        ctx.say(f"round {round_number + 1}: {seconds:.2f} s, {len(failures)} failure(s) so far")
    runner_stats, docker_stats = Stats.of(walls["runner"]), Stats.of(walls["docker"])
    note = "; ".join(dict.fromkeys(failures))[:400] if failures else ""
    rows = [
        Row("concurrency", f"{PARALLEL} parallel `runner create`, wall time", runner_stats,
            f"{PARALLEL} parallel docker run -d", docker_stats, fmt_ratio(ratio(runner_stats, docker_stats))),
        Row("concurrency", f"{PARALLEL} parallel `runner create`, failures", Stats.of([float(len(failures))]),
            comparison=f"{len(failures)} of {PARALLEL * len(walls['runner'])} creates",
            target=f"= {FAILURE_TARGET}", verdict=at_most(len(failures), FAILURE_TARGET), note=note, unit="count"),
    ]
    if walls["terminate"]:
        rows.append(Row("concurrency", f"`runner terminate` of {PARALLEL} runs (one command)",
                        Stats.of(walls["terminate"]), note="sequential inside the command"))
    return rows


def _parallel(ctx: BenchContext, argvs: Sequence[Sequence[str]],
              home: RunnerEnv | None) -> tuple[float, list[tuple[int, bytes, bytes]]]:
    started = time.perf_counter()
    children = [ctx.spawn(argv, home.env if home else None) for argv in argvs]
    outcomes = []
    for child in children:
        out, err = child.communicate(timeout=600)
        outcomes.append((child.returncode, out, err))
    return time.perf_counter() - started, outcomes


def _check(outcomes: list[tuple[int, bytes, bytes]], failures: list[str]) -> list[str]:
    ids = []
    for code, out, err in outcomes:
        try:
            record = json.loads(out) if code == 0 else None
        except ValueError:
            record = None
        if record is None:
            message = err.decode(errors="replace").strip().splitlines()
            failures.append(f"exit {code}: {message[0] if message else '(no message)'}")
            continue
        ids.append(str(record["id"]))
    return ids


def _not_running(ctx: BenchContext, home: RunnerEnv, ids: list[str]) -> list[str]:
    listing = json.loads(run(ctx.runner("list", "--json"), env=home.env).stdout)
    status = {r["id"]: r for r in listing}
    return [f"run {run_id} {status.get(run_id, {}).get('status', 'missing')}: {status.get(run_id, {}).get('reason')}"
            for run_id in ids if status.get(run_id, {}).get("status") != "running"]


GROUP = Group("concurrency", "Concurrency", "#7", measure)
