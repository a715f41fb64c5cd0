"""`python -m benchmarks [--quick] [--only GROUP]... [--out PATH]`: run the suite, print a table, write the report.

Exit status: 0 when every group measured (MISSes included), 1 when a group could not be measured
(ERROR) or the preflight failed, 130 on Ctrl-C. Everything the suite creates is removed either way.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks import machine, report
from benchmarks.context import BUSYBOX, BenchContext, Settings
from benchmarks.groups import Group, all_groups
from benchmarks.harness import HarnessError
from benchmarks.results import Row, error_row, fmt_stats

REPO = Path(__file__).resolve().parent.parent


def _parser(groups: Sequence[Group]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure runner against baselines on the local Docker engine and write docs/performance.md.",
        epilog="groups: " + ", ".join(f"{g.name} ({g.title})" for g in groups),
    )
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and no 2 GiB artifact case (development; results not comparable)")
    parser.add_argument("--only", action="append", default=[], metavar="GROUP", choices=[g.name for g in groups],
                        help="run only this group (repeatable)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path (default: docs/performance.md for a full run; quick or --only runs "
                             "write nothing unless --out is given)")
    parser.add_argument("--quickstart-manifest", type=Path, default=REPO / "manifests" / "quickstart.yaml",
                        help="manifest for the quickstart group (default: manifests/quickstart.yaml)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    bindir = Path(sys.executable).parent
    runner = bindir / "runner"
    if not runner.is_file():
        found = shutil.which("runner")
        if found is None:
            raise HarnessError("no `runner` executable next to this Python or on PATH; run `make venv`")
        runner = Path(found)
    return Settings(quick=args.quick, repo=REPO, runner=runner, python=Path(sys.executable),
                    quickstart=args.quickstart_manifest.resolve())


def _preflight() -> None:
    for argv, problem in ((["docker", "version", "--format", "{{.Server.Version}}"], "no Docker engine answers "
                           "(`make engine`)"), (["docker", "image", "inspect", BUSYBOX],
                                                f"the test image {BUSYBOX} is missing (`make images`)")):
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise HarnessError(problem)


def _run_group(ctx: BenchContext, group: Group) -> list[Row]:
    print(f"\n== {group.name}: {group.title}", flush=True)
    started = time.perf_counter()
    try:
        rows = group.run(ctx)
    except Exception as exc:  # one group failing (a runner bug, a harness bug) must not lose the others
        traceback.print_exc()
        rows = [error_row(group.name, f"{type(exc).__name__}: {exc}")]
    finally:
        ctx.release()
    for row in rows:
        print(f"  {row.verdict:<5} {row.name}: {fmt_stats(row.candidate, row.unit)}"
              + (f" vs {row.baseline_name} {fmt_stats(row.baseline, row.unit)}" if row.baseline else "")
              + (f" → {row.comparison}" if row.comparison else "")
              + (f" (target {row.target})" if row.target else ""), flush=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return rows


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    groups = all_groups()
    args = _parser(groups).parse_args(argv)
    selected = [g for g in groups if not args.only or g.name in args.only]
    out: Path | None = args.out or (None if args.quick or args.only else REPO / "docs" / "performance.md")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        settings = _settings(args)
        _preflight()
    except HarnessError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 1
    started_at, started = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    load_at_start = report.load_average()
    ctx = BenchContext(settings)
    rows: list[Row] = []
    try:
        print(f"runner benchmarks ({'quick' if args.quick else 'full'}): {', '.join(g.name for g in selected)}; "
              f"scratch {ctx.root}", flush=True)
        for group in selected:
            rows += _run_group(ctx, group)
        info = report.RunInfo(started_at, time.perf_counter() - started, args.quick, args.only,
                              machine.describe(REPO, settings.python, settings.runner, ctx.root),
                              " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)]),
                              (load_at_start, report.load_average()))
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr, flush=True)
        return 130
    finally:
        ctx.close()
    print("\n" + report.console_table(rows))
    print(f"\n{report.summary(rows)}; {info.seconds / 60:.1f} min")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.markdown(rows, selected, info, report.existing_notes(out)))
        print(f"wrote {out}")
    return 1 if any(row.verdict == "ERROR" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
