"""Git import through the mirror cache, cold (empty cache) and warm, vs `git clone` of a 5,000-commit repo.

The repository is local (a bare repo made with `git fast-import`), reached as a file:// URL, so
the numbers are git's and runner's work, not the network's. Import is measured in-process with
`GitMirrorCache.checkout`, the same call a run makes, which leaves out the CLI's start-up; cold
uses a fresh cache directory each round, warm the one the cold import of that round filled.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.context import BenchContext, force_rmtree
from benchmarks.fixtures.gitrepo import git_env, make_repo
from benchmarks.groups import Group
from benchmarks.harness import HarnessError, Stats, Trial, interleave, timed
from benchmarks.results import Row, at_most, fmt_ratio, ratio

COMMITS = 5000
WARM_TARGET = 0.5


def measure(ctx: BenchContext) -> list[Row]:
    from runner.manifest.giturl import parse_git_url
    from runner.sources.git import GitImportRequest, GitMirrorCache

    work = ctx.new_dir("git")
    ctx.say(f"building a {COMMITS:,}-commit repository with git fast-import (not measured)")
    repo = make_repo(work / "repo.git", COMMITS)
    url = f"file://{repo}"
    request = GitImportRequest(url=parse_git_url(url), ref="main", allow_local=True)
    env = git_env()
    caches: list[Path] = []

    def clone() -> float:
        dest = work / "clone"
        seconds = timed(["git", "clone", "--quiet", url, dest], env=env)
        force_rmtree(dest)
        return seconds

    def checkout(cache: Path, expect_warm: bool) -> float:
        dest = work / "checkout"
        started = time.perf_counter()
        result = GitMirrorCache(cache).checkout(request, dest)
        seconds = time.perf_counter() - started
        force_rmtree(dest)
        if result.warm != expect_warm:
            raise HarnessError(f"expected a {'warm' if expect_warm else 'cold'} import, got the other")
        return seconds

    def cold() -> float:
        if caches:
            force_rmtree(caches.pop())
        caches.append(work / ctx.unique("cache-"))
        return checkout(caches[-1], expect_warm=False)

    samples = interleave([Trial("git clone", clone), Trial("cold", cold),
                          Trial("warm", lambda: checkout(caches[-1], expect_warm=True))],
                         repetitions=ctx.reps(7, 3), warmup=1, progress=ctx.say)
    base, cold_stats, warm_stats = (Stats.of(samples[name]) for name in ("git clone", "cold", "warm"))
    warm_ratio = ratio(warm_stats, cold_stats)
    return [
        Row("git", f"import cold (empty mirror cache), {COMMITS:,} commits", cold_stats, "git clone file://", base,
            fmt_ratio(ratio(cold_stats, base))),
        Row("git", f"import warm (mirror cached), {COMMITS:,} commits", warm_stats, "import cold", cold_stats,
            f"{fmt_ratio(warm_ratio)} of cold; {fmt_ratio(ratio(warm_stats, base))} of git clone",
            f"≤ {WARM_TARGET}× cold", at_most(warm_ratio, WARM_TARGET)),
    ]


GROUP = Group("git", "Git import (mirror cache)", "#7", measure)
