"""Artifact import/export with a synthetic HF cache of 1 MiB, 512 MiB and 2 GiB, next to `cp -a` of the same tree.

Per size, one RUNNER_HOME is seeded with the tree as artifact `hfcache` (`runner artifact import`,
a real copy: timed once, for context). Then each round measures, for every size in turn:
- `cp -a` of the tree (the cost of moving the bytes; untimed afterwards: rm + sync, so its
  writeback does not land in the next measurement);
- a whole run of VESSL's cache pattern (import and export the same path; one step writes one
  file): `runner create` → the container exits → the `runner list` that finalizes it (the export
  publishes a new version); the parts are reported too;
- the export alone: `ArtifactStore.publish_tree` of the imported version plus one changed file.
Targets: the run is flat in size (2 GiB within 1.5× of 1 MiB) and the export takes ≤ 1 s at 2 GiB.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.context import BenchContext, RunnerEnv, force_rmtree
from benchmarks.fixtures import manifests
from benchmarks.fixtures.hfcache import make_hf_cache
from benchmarks.groups import Group
from benchmarks.harness import HarnessError, Stats, Trial, interleave, timed, timed_output
from benchmarks.results import Row, at_most, fmt_ratio, fmt_stats, ratio, skip_row

MiB = 1 << 20
SIZES = (("1 MiB", MiB), ("512 MiB", 512 * MiB), ("2 GiB", 2048 * MiB))
FLAT_TARGET = 1.5
EXPORT_TARGET_S = 1.0
FILES = 1000
ARTIFACT = "hfcache"


@dataclass
class SizeResult:
    label: str
    size: int
    run: Stats
    copy: Stats
    export: Stats
    parts: dict[str, Stats] = field(default_factory=dict)
    seed_s: float = 0.0


@dataclass
class SizeSetup:
    label: str
    size: int
    home: RunnerEnv
    work: Path
    tree: Path
    manifest: Path
    seed_s: float
    parts: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "container": [], "finalize": []})


def measure(ctx: BenchContext) -> list[Row]:
    rows: list[Row] = []
    sizes = []
    free = shutil.disk_usage(ctx.root).free - 1024 * MiB
    for label, size in SIZES[:2] if ctx.settings.quick else SIZES:
        if free < 3 * size:  # the tree, its seeded version and one cp -a copy at a time
            rows.append(skip_row("artifacts", f"HF cache {label}", f"needs {3 * size / MiB:.0f} MiB more free "
                                 f"space on {ctx.root}"))
            continue
        free -= 3 * size
        sizes.append((label, size))
    setups = []
    for label, size in sizes:
        ctx.say(f"{label}: generating {FILES} files + symlinks, seeding the artifact (not measured)")
        setups.append(_setup(ctx, label, size))
    trials = []
    for setup in setups:  # every size in every round: drift hits all sizes alike
        trials += [Trial(f"cp -a {setup.label}", partial(_copy, setup)),
                   Trial(f"run {setup.label}", partial(_one_run, ctx, setup.home, setup.manifest, setup.parts)),
                   Trial(f"export {setup.label}", partial(_export_only, setup.home, setup.work))]
    samples = interleave(trials, repetitions=ctx.reps(5, 3), warmup=1, progress=ctx.say)
    results = [_result(setup, samples) for setup in setups]
    for result in results:
        rows += _size_rows(result, last=result is results[-1] and result.label == SIZES[-1][0])
    if len(results) >= 2:
        rows.append(_flatness_row(results[0], results[-1]))
    return rows


def _setup(ctx: BenchContext, label: str, size: int) -> SizeSetup:
    home = ctx.new_home(f"artifacts-{size // MiB}m")
    work = ctx.new_dir(f"artifacts-{size // MiB}m")
    tree = make_hf_cache(work / "hf", size, FILES).root
    os.sync()
    seed_s = timed(ctx.runner("artifact", "import", tree, ARTIFACT), env=home.env, timeout=900)
    os.sync()
    manifest = manifests.write(work, "cache", manifests.cache_manifest())
    return SizeSetup(label, size, home, work, tree, manifest, seed_s)


def _copy(setup: SizeSetup) -> float:
    dest = setup.work / "copy"
    seconds = timed(["cp", "-a", setup.tree, dest], timeout=900)
    force_rmtree(dest)
    os.sync()  # its writeback must not land in the next measurement
    return seconds


def _result(setup: SizeSetup, samples: dict[str, list[float]]) -> SizeResult:
    runs = samples[f"run {setup.label}"]
    warm = len(setup.parts["create"]) - len(runs)  # drop the warm-up round's parts
    return SizeResult(setup.label, setup.size, Stats.of(runs), Stats.of(samples[f"cp -a {setup.label}"]),
                      Stats.of(samples[f"export {setup.label}"]),
                      {name: Stats.of(values[warm:]) for name, values in setup.parts.items()}, setup.seed_s)


def _one_run(ctx: BenchContext, home: RunnerEnv, manifest: Path, parts: dict[str, list[float]]) -> float:
    started = time.perf_counter()
    created_s, out = timed_output(ctx.runner("create", "-f", manifest, "--name", ctx.unique("bench-cache-"),
                                             "--json"), env=home.env)
    run_id = str(json.loads(out)["id"])
    exited = time.perf_counter()
    code = ctx.wait_exited(f"runner-{run_id}")
    ended = time.perf_counter()
    finalize_s, listing = timed_output(ctx.runner("list", "--json"), env=home.env)
    total = time.perf_counter() - started
    record = next((r for r in json.loads(listing) if r["id"] == run_id), None)
    if code != 0 or record is None or record["status"] != "completed":
        raise HarnessError(f"cache-pattern run {run_id} did not complete (exit {code}): {record}")
    parts["create"].append(created_s)
    parts["container"].append(ended - exited)
    parts["finalize"].append(finalize_s)
    return total


def _export_only(home: RunnerEnv, work: Path) -> float:
    from runner.artifacts import ArtifactRef, ArtifactStore

    store = ArtifactStore(home.home / "artifacts")
    lower = store.resolve(ArtifactRef("artifact", ARTIFACT))
    upper = work / "upper"
    upper.mkdir()
    (upper / "last-run").write_text(time.ctime())
    started = time.perf_counter()
    store.publish_tree("artifact", ARTIFACT, lower=lower, upper=upper, run_id=None)
    seconds = time.perf_counter() - started
    force_rmtree(upper)
    return seconds


def _size_rows(result: SizeResult, *, last: bool) -> list[Row]:
    label, copy, p = result.label, result.copy, result.parts
    breakdown = (f"create {fmt_stats(p['create'])} · container {fmt_stats(p['container'])} · "
                 f"finalize {fmt_stats(p['finalize'])}")
    export_target = f"≤ {EXPORT_TARGET_S:g} s" if last else ""
    return [
        Row("artifacts", f"run create → completed, {label}", result.run, f"cp -a, {label}", copy,
            fmt_ratio(ratio(result.run, copy)), note=breakdown),
        Row("artifacts", f"finalize (`runner list` that exports), {label}", p["finalize"], f"cp -a, {label}", copy,
            fmt_ratio(ratio(p["finalize"], copy)), note="list + persist logs + export + remove container"),
        Row("artifacts", f"export alone (`publish_tree`), {label}", result.export, f"cp -a, {label}", copy,
            fmt_ratio(ratio(result.export, copy)), export_target,
            at_most(result.export.median, EXPORT_TARGET_S) if last else "INFO"),
        Row("artifacts", f"seed (`runner artifact import`), {label}", Stats.of([result.seed_s]), f"cp -a, {label}",
            copy, fmt_ratio(result.seed_s / copy.median), note="a real copy + hash of every byte; not a target"),
    ]


def _flatness_row(small: SizeResult, large: SizeResult) -> Row:
    value = ratio(large.run, small.run)
    targeted = large.label == SIZES[-1][0] and small.label == SIZES[0][0]
    return Row("artifacts", f"run time {large.label} ÷ {small.label}", None, f"cp -a {large.label} ÷ {small.label}",
               None, f"{fmt_ratio(value)} (cp -a: {fmt_ratio(ratio(large.copy, small.copy))})",
               f"≤ {FLAT_TARGET}×" if targeted else "", at_most(value, FLAT_TARGET) if targeted else "INFO",
               note="flat in size = cost follows file count, not bytes")


GROUP = Group("artifacts", "Artifact import/export (HF cache)", "#4, #7", measure)
