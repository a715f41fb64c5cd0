"""CLI latency: `--help`, `validate` (200-line manifest), `list` at 0 / 1,000 / 10,000 runs.

Baselines: `python -c pass` on the same interpreter (the floor of any Python CLI) and
`docker ps -a` (what a user types to see containers). The seeded runs are all ended, so a
plain `runner list` needs no engine call; a last phase adds one running run, which makes
`list` reconcile against the engine, and reports that as context.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from benchmarks.context import BenchContext, RunnerEnv
from benchmarks.fixtures import manifests
from benchmarks.fixtures.records import empty_store, seed_ended_runs
from benchmarks.groups import Group
from benchmarks.harness import Stats, Trial, interleave, run, timed
from benchmarks.results import Row, at_most, fmt_delta, fmt_ratio, ratio

VALIDATE_TARGET_S = 0.25
LIST_TARGET_S = 0.3
SIZES = (0, 1000, 10_000)


def _homes(ctx: BenchContext) -> dict[int, RunnerEnv]:
    homes = {}
    for size in SIZES:
        home = ctx.new_home(f"list{size}")
        if size:
            seed_ended_runs(home.home, size)
        else:
            empty_store(home.home)
        homes[size] = home
    return homes


def measure(ctx: BenchContext) -> list[Row]:
    work = ctx.new_dir("cli")
    long_manifest = manifests.write(work, "long", manifests.long_manifest())
    ctx.say("seeding run stores with 0, 1,000 and 10,000 ended runs (not measured)")
    homes = _homes(ctx)
    python: list[str | Path] = [ctx.settings.python, "-c", "pass"]
    docker_ps = ["docker", "ps", "-a"]
    trials = [
        Trial("python -c pass", lambda: timed(python)),
        Trial("docker ps -a", lambda: timed(docker_ps)),
        Trial("runner --help", lambda: timed(ctx.runner("--help"), env=homes[0].env)),
        Trial("runner validate", lambda: timed(ctx.runner("validate", "-f", long_manifest), env=homes[0].env)),
    ]
    trials += [Trial(f"runner list ({size})", _lister(ctx, homes[size], "list")) for size in SIZES]
    trials.append(Trial("runner list --all (10000)", _lister(ctx, homes[10_000], "list", "--all")))
    samples = {name: Stats.of(values) for name, values in interleave(
        trials, repetitions=ctx.reps(15, 5), warmup=2, progress=ctx.say).items()}
    rows = _rows(samples)
    rows.append(_list_with_active_run(ctx, homes[10_000]))
    return rows


def _lister(ctx: BenchContext, home: RunnerEnv, *args: str) -> Callable[[], float]:
    argv = ctx.runner(*args)
    return lambda: timed(argv, env=home.env)


def _rows(s: dict[str, Stats]) -> list[Row]:
    python, ps = s["python -c pass"], s["docker ps -a"]
    help_stats, validate = s["runner --help"], s["runner validate"]
    rows = [
        Row("cli", "`runner --help`", help_stats, "python -c pass", python,
            f"{fmt_ratio(ratio(help_stats, python))}, {fmt_delta(help_stats.median - python.median)}"),
        Row("cli", "`runner validate` (200-line manifest)", validate, "python -c pass", python,
            f"{fmt_ratio(ratio(validate, python))}, {fmt_delta(validate.median - python.median)}",
            f"≤ {VALIDATE_TARGET_S} s", at_most(validate.median, VALIDATE_TARGET_S)),
    ]
    for size in SIZES:
        stats = s[f"runner list ({size})"]
        targeted = size in (1000, 10_000)
        rows.append(Row(
            "cli", f"`runner list`, {size:,} ended runs", stats, "docker ps -a", ps, fmt_ratio(ratio(stats, ps)),
            f"≤ {LIST_TARGET_S} s" if targeted else "",
            at_most(stats.median, LIST_TARGET_S) if targeted else "INFO",
        ))
    every = s["runner list --all (10000)"]
    rows.append(Row("cli", "`runner list --all`, 10,000 ended runs", every, "docker ps -a", ps,
                    fmt_ratio(ratio(every, ps)), note="prints all 10,000 rows"))
    return rows


def _list_with_active_run(ctx: BenchContext, home: RunnerEnv) -> Row:
    """10,000 ended runs + 1 running: `list` now asks the engine (one containers query)."""
    manifest = manifests.write(ctx.new_dir("cli-active"), "sleep", manifests.sleep_manifest("bench-list-active"))
    created = json.loads(run(ctx.runner("create", "-f", manifest, "--json"), env=home.env).stdout)
    ps = ["docker", "ps", "-a"]
    samples = interleave([Trial("ps", lambda: timed(ps)),
                          Trial("list", lambda: timed(ctx.runner("list"), env=home.env))],
                         repetitions=ctx.reps(10, 3), warmup=1)
    run(ctx.runner("terminate", created["id"], "--grace", "0"), env=home.env)
    stats, base = Stats.of(samples["list"]), Stats.of(samples["ps"])
    return Row("cli", "`runner list`, 10,000 ended + 1 running", stats, "docker ps -a", base,
               fmt_ratio(ratio(stats, base)), note="reconciles the running run with the engine")


GROUP = Group("cli", "CLI latency", "#2, #3, #7", measure)
