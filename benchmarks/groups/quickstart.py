"""The quickstart's time-to-ready: cold (image build + empty cache), warm image, warm image + warm cache.

Skipped with a "not available yet" row while `manifests/quickstart.yaml` does not exist.
Each measurement is `runner create --wait` (until every http port answers) in a RUNNER_HOME:
- cold: a fresh home (empty artifact and model caches) and the image tag removed first, so
  runner builds it. The engine is shared, so the copy of the manifest used here builds under a
  tag of this session (never removing the tag `make quickstart` uses), and Docker's layer cache
  is left alone: cold means "runner builds the image", not "Docker starts from nothing". The
  copy also publishes its ports on any free host port (`host_port: 0`), for the same reason;
- warm image: a fresh home, the image present;
- warm image + warm cache: the home of an earlier run, whose export filled the HF cache artifact.
Runs are terminated after each measurement (untimed); that is when the export happens.
The API key is a throwaway value; without a local `runner-demo-base:1` the test image
`runner-test/debian-python:1` (made by `make images`) is the base, as `make quickstart` does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from benchmarks.context import BenchContext, RunnerEnv
from benchmarks.groups import Group
from benchmarks.harness import HarnessError, Stats, Trial, interleave, run, timed_output
from benchmarks.results import Row, fmt_ratio, ratio, skip_row

TIMEOUT_S = 900.0
DEMO_BASE = "runner-demo-base:1"
FALLBACK_BASE = "runner-test/debian-python:1"
_CONTEXT = re.compile(r"^(?P<indent>\s+)context:\s*(?P<value>[^#\s]+)", re.M)
_TAG = re.compile(r"^(?P<indent>\s+)tag:\s*(?P<value>[^#\s]+)", re.M)
_PORT = re.compile(r"^(?P<indent>\s+)port:\s*\d+\s*(#.*)?$", re.M)


def measure(ctx: BenchContext) -> list[Row]:
    original = ctx.settings.quickstart
    if not original.is_file():
        return [skip_row("quickstart", "quickstart time-to-ready (cold, warm image, warm image + cache)",
                         f"not available yet: {_shown(ctx, original)} does not exist")]
    tag = f"runner-bench-quickstart:{ctx.session}"
    manifest, own_tag = _private_copy(original, ctx.new_dir("quickstart"), tag)
    extra = _env()
    try:
        return _measure(ctx, manifest, tag if own_tag else None, extra)
    finally:
        if own_tag:
            subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)


def _measure(ctx: BenchContext, manifest: Path, own_tag: str | None, extra: dict[str, str]) -> list[Row]:
    def home(name: str) -> RunnerEnv:
        fresh = ctx.new_home(name)
        return RunnerEnv(fresh.home, {**fresh.env, **extra})

    ctx.say("first run (warm-up: builds the image, fills the cache of the warm-cache case)")
    cached = home("quickstart-cached")
    _create_and_stop(ctx, manifest, cached)

    def cold() -> float:
        if own_tag:
            run(["docker", "image", "rm", "-f", own_tag])
        return _create_and_stop(ctx, manifest, home("quickstart-cold"))

    samples = interleave([
        Trial("cold", cold),
        Trial("warm image", lambda: _create_and_stop(ctx, manifest, home("quickstart-warm"))),
        Trial("warm image + cache", lambda: _create_and_stop(ctx, manifest, cached)),
    ], repetitions=ctx.reps(3, 1), warmup=0, progress=ctx.say)
    stats = {name: Stats.of(values) for name, values in samples.items()}
    cold_note = ("image tag removed → runner builds it (Docker layer cache kept); empty caches" if own_tag
                 else "the manifest's image could not be isolated: cold = empty caches only")
    return [
        Row("quickstart", "time-to-ready, cold", stats["cold"], note=cold_note),
        Row("quickstart", "time-to-ready, warm image", stats["warm image"], "cold", stats["cold"],
            fmt_ratio(ratio(stats["warm image"], stats["cold"])), note="fresh RUNNER_HOME: empty caches"),
        Row("quickstart", "time-to-ready, warm image + warm cache", stats["warm image + cache"], "cold",
            stats["cold"], fmt_ratio(ratio(stats["warm image + cache"], stats["cold"])),
            note="imports the HF cache artifact an earlier run exported"),
    ]


def _private_copy(original: Path, directory: Path, tag: str) -> tuple[Path, bool]:
    """The manifest with an absolute build context and this session's tag; (path, whether the tag is ours)."""
    text = original.read_text()
    context, tagged = _CONTEXT.search(text), _TAG.search(text)
    if context is None or tagged is None:
        return original, False
    absolute = (original.parent / context.group("value")).resolve()
    text = _CONTEXT.sub(lambda m: f"{m.group('indent')}context: {absolute}", text, count=1)
    text = _TAG.sub(lambda m: f"{m.group('indent')}tag: {tag}", text, count=1)
    if "host_port" not in text:  # any free host port: the engine is shared, 8000 may be taken
        text = _PORT.sub(lambda m: f"{m.group(0)}\n{m.group('indent')}host_port: 0", text)
    copy = directory / original.name
    copy.write_text(text)
    return copy, True


def _env() -> dict[str, str]:
    extra = {"API_KEY": "bench-throwaway-key"}
    if not os.environ.get("RUNNER_DEMO_BASE"):
        present = subprocess.run(["docker", "image", "inspect", DEMO_BASE], capture_output=True, check=False)
        if present.returncode != 0:
            extra.update(RUNNER_DEMO_BASE=FALLBACK_BASE, RUNNER_DEMO_INSTALL_DEPS="0")
    return extra


def _create_and_stop(ctx: BenchContext, manifest: Path, home: RunnerEnv) -> float:
    """Seconds from `runner create --wait` to ready; the run is terminated afterwards (untimed)."""
    started = time.perf_counter()
    _, out = timed_output(ctx.runner("create", "-f", manifest, "--name", ctx.unique("bench-quickstart-"), "--wait",
                                     "--json"), env=home.env, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - started
    record = json.loads(out)
    run(ctx.runner("terminate", str(record["id"])), env=home.env, timeout=TIMEOUT_S)
    if not record.get("ready"):
        raise HarnessError(f"the quickstart run was not ready: {record.get('status')} {record.get('reason')}")
    return seconds


def _shown(ctx: BenchContext, path: Path) -> str:
    try:
        return str(path.relative_to(ctx.settings.repo))
    except ValueError:
        return str(path)


GROUP = Group("quickstart", "Quickstart time-to-ready", "#5", measure)
