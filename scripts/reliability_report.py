#!/usr/bin/env python3
"""Run the reliability tier and the tests it cites, then write docs/reliability.md.

    .venv/bin/python scripts/reliability_report.py              # run everything (~20 min), write the doc
    .venv/bin/python scripts/reliability_report.py --tier-only  # only tests/reliability (~6 min)
    .venv/bin/python scripts/reliability_report.py --reuse DIR  # re-render from DIR/junit.xml + DIR/figures.json

Every row of reliability.md's table (R1–R17, S1–S13) gets: the property, the tests that prove it, their
result in this run, and the figures the tests recorded (faults injected and survived, hostile inputs
tried, leaks found) through RUNNER_RELIABILITY_REPORT (tests/reliability/conftest.py). Rows that cannot
pass on this machine say why. Known bugs come from the `xfail(strict=True, reason="BUG: …")` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TIER = "tests/reliability"
IT, UT = "tests/integration", "tests/unit"


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    criterion: str
    proofs: tuple[str, ...] = ()  # node id prefixes: a file, a test, or a test with the start of its parameters
    hostile: bool = False  # each matched test case counts as one hostile input tried
    limit: str = ""  # why (part of) the row cannot pass here, and what was done instead
    skip_run: bool = False  # the whole row cannot run here


ROWS = (
    Row("R1", "kill -9 during `create`", "checkpoints ×3 + 20 random kills consistent; re-create → 1 container; "
        "nothing after gc",
        (f"{TIER}/test_r01_create_crash.py", f"{IT}/test_engine_reconcile.py::test_a_create_killed_midway")),
    Row("R2", "idempotent `create`", "same run id sequentially; racing pairs → 1 container + 1 record, no traceback",
        (f"{TIER}/test_r02_idempotent_create.py", f"{IT}/test_cli_runs.py::test_create_adopts_the_same_run",
         f"{IT}/test_cli_runs.py::test_create_reuses_the_name")),
    Row("R3", "many processes on one store", "no SQLITE_BUSY/traceback; 200/200 records; terminated runs have no "
        "container; p99 `list` < 2 s", (f"{TIER}/test_r03_concurrency.py",),
        limit="p99 of `list` is asserted on wall time minus CPU run-queue wait (12 busy processes on 2 CPUs); the "
        "wall-clock p99 is reported beside it"),
    Row("R4", "changes behind runner's back", "rm -f / kill / stop → `container disappeared` or the exit code; "
        "none stays running",
        (f"{TIER}/test_r04_behind_our_back.py", f"{IT}/test_engine_reconcile.py::test_behind_our_back",
         f"{IT}/test_engine_reconcile.py::test_every_command_reconciles", f"{IT}/test_engine_reconcile.py::test_gc_"),
        limit="`docker network rm`: runner creates no networks (asserted), so there is nothing to remove"),
    Row("R5", "daemon restart", "live-restore off/on: exit codes recorded / same runs running",
        limit="not in the issue, and restarting the one shared Docker daemon would kill every other engineer's "
        "containers on this machine; needs a dedicated (DinD) engine", skip_run=True),
    Row("R6", "graceful stop", "trap: terminated < grace; ignore: 137 at grace ±1 s, not OOM; no handler: < 2 s",
        (f"{TIER}/test_r06_graceful_stop.py", f"{IT}/test_engine_lifecycle.py::test_terminate_kills_a_sigterm",
         f"{IT}/test_engine_lifecycle.py::test_terminate_lets_a_trapping")),
    Row("R7", "exit status fidelity", "0, 1, 2, 42, 126, 127, 255, SIGSEGV (139) = `docker inspect`; `create "
        "--wait` as documented",
        (f"{TIER}/test_r07_exit_codes.py", f"{IT}/test_engine_lifecycle.py::test_exit_codes_are_read",
         f"{IT}/test_cli_runs.py::test_create_wait_reports_a_container_that_dies"),
        limit="`create --wait` exits 0/1 (documented), not the container's code: it waits for readiness, not for "
        "the end; the code is in `list`/`describe`"),
    Row("R8", "out of memory", "main process OOM → failed \"OOM killed\" 10/10; child OOM, exit 0 → completed + "
        "warning 10/10", (f"{TIER}/test_r08_oom.py", f"{IT}/test_engine_lifecycle.py::test_oom_kill")),
    Row("R9", "start failures", "port in use, GPU without runtime, missing entrypoint, image 404 → failed with the "
        "engine's message, 0 objects",
        (f"{TIER}/test_r09_start_failures.py", f"{IT}/test_engine_create.py::test_port_in_use",
         f"{IT}/test_engine_create.py::test_missing_image", f"{IT}/test_engine_create.py::test_gpu_request"),
        limit="no NVIDIA runtime here: the GPU case is runner's preflight refusal (nothing reaches the engine); "
        "the engine-side `could not select device driver` path cannot be produced"),
    Row("R10", "kill -9 during `terminate`", "each checkpoint ×5 → terminated with exit code, 0 containers; "
        "terminate again exits 0",
        (f"{TIER}/test_r10_terminate_crash.py", f"{IT}/test_artifact_faults.py::test_kill_at_checkpoint_never_corrupts"
         "[terminate_")),
    Row("R11", "atomic exports", "kill -9 at each export checkpoint and at random: LATEST absent or verifiable; "
        "staging cleared by gc",
        (f"{UT}/test_artifacts_crash.py::test_kill_at_each_export_checkpoint",
         f"{UT}/test_artifacts_crash.py::test_random_kills_during_a_large_export",
         f"{IT}/test_artifact_faults.py::test_kill_at_checkpoint_never_corrupts",
         f"{IT}/test_artifact_faults.py::test_kill_at_a_delay_inside_the_export"),
        limit="the synthetic cache is smaller than the table's ~2 GB (export cost is metadata-only, measured in "
        "benchmarks/)"),
    Row("R12", "concurrent exports", "both versions complete or one refused; LATEST valid; importer reads a "
        "complete version",
        (f"{UT}/test_artifacts_crash.py::test_concurrent_exporters_and_a_reader",
         f"{UT}/test_artifacts_crash.py::test_latest_never_moves_backwards",
         f"{UT}/test_artifacts_crash.py::test_rename_moves_past",
         f"{IT}/test_artifact_faults.py::test_parallel_terminates",
         f"{IT}/test_artifact_faults.py::test_racing_lists")),
    Row("R13", "store crash under write load", "kill -9 during 1,000 BEGIN IMMEDIATE writes, 50× → integrity ok, "
        "no partial run", (f"{TIER}/test_r13_store_crash.py",)),
    Row("R14", "bounded logs", "1 GiB of stdout → on-disk log ≤ max-size × max-file; `logs --tail` fast",
        (f"{IT}/test_engine_create.py::test_container_shape",),
        limit="not in the issue; only the bounded LogConfig (json-file, 25m × 2) is asserted, the 1 GiB write is "
        "not run"),
    Row("R15", "engine unreachable", "exit 3, names the address, 0 store writes",
        (f"{TIER}/test_r15_unreachable.py", f"{IT}/test_cli_runs.py::test_unreachable_engine"),
        limit="runner refuses to answer (exit 3) instead of printing stale rows marked UNKNOWN"),
    Row("R16", "model-based lifecycle", "Hypothesis state machine over a fake Docker, invariants after every step",
        limit="not in the issue; runner has no fake Docker backend (its tests use the real engine). The same "
        "invariants are the oracle (tests/reliability/oracle.py), checked after every real fault instead",
        skip_run=True),
    Row("R17", "signals to a foreground `create --wait`", "SIGINT, SIGTERM, SIGHUP, SIGINT to the group: graceful "
        "stop, exit 128+n within grace + 2 s; second SIGINT kills", (f"{TIER}/test_r17_foreground_signals.py",)),
    Row("S1", "YAML alias bomb", "rejected < 100 ms, RSS < 20 MB, line/column, nothing created",
        (f"{UT}/test_manifest_load.py::test_billion_laughs", f"{UT}/test_manifest_load.py::test_anchor",
         f"{UT}/test_manifest_load.py::test_alias",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[alias-"), hostile=True),
    Row("S2", "depth and size", "20,000 `[`, 2 MiB file, 10 MiB scalar → ManifestError < 1 s, exit 2",
        (f"{UT}/test_manifest_load.py::test_twenty_thousand", f"{UT}/test_manifest_load.py::test_other_deep_nesting",
         f"{UT}/test_manifest_load.py::test_two_mib", f"{UT}/test_manifest_load.py::test_ten_mib",
         f"{UT}/test_manifest_load.py::test_node_count",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[deep-",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[two-mib",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[ten-mib",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[node-flood"), hostile=True),
    Row("S3", "fuzzing the parser", "Hypothesis 100k in CI + atheris nightly: only ManifestError, no hang, no leak",
        (f"{UT}/test_fuzz_manifest.py",), hostile=True,
        limit="Hypothesis runs 300 examples × 3 strategies by default and 3,000 × 3 in the `slow` variants, not "
        "100k; atheris is not installed here (no nightly job)"),
    Row("S4", "secret canary", "0 occurrences (raw, base64, URL-encoded) anywhere; only in /run/secrets",
        (f"{TIER}/test_s04_secret_canary.py", f"{IT}/test_engine_create.py::test_secret_canary",
         f"{IT}/test_quickstart.py::test_the_api_key_never_leaks")),
    Row("S5", "redacted validation errors", "JSON path, never the value, for every error kind",
        (f"{TIER}/test_s05_redaction.py", f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[secret-",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[inline-",
         f"{UT}/test_manifest_errors.py::test_env_values_are_never_quoted_back",
         f"{UT}/test_manifest_errors.py::test_credentials_in_a_value"), hostile=True),
    Row("S6", "hostile git URLs and refs", "0 git invocations for rejected inputs; allowed clones hardened",
        (f"{IT}/test_git_import.py::test_local_sources_refused",
         f"{IT}/test_git_import.py::test_hand_built_hostile_url",
         f"{IT}/test_git_import.py::test_hostile_ref", f"{IT}/test_git_import.py::test_every_invocation_is_hardened",
         f"{IT}/test_git_import.py::test_file_and_http", f"{IT}/test_git_import.py::test_caller_environment",
         f"{IT}/test_git_import.py::test_submodule", f"{UT}/test_giturl.py",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[git-"), hostile=True),
    Row("S7", "no credential prompts", "auth error < 30 s, no prompt or hang",
        (f"{IT}/test_git_import.py::test_auth_required", f"{IT}/test_git_import.py::test_hung_remote")),
    Row("S8", "git token", "absent from argv, .git/config, logs, DB",
        (f"{TIER}/test_s08_git_token_run.py", f"{IT}/test_git_import.py::test_token_",
         f"{IT}/test_git_import.py::test_scrub_masks", f"{IT}/test_git_import.py::test_checkout_config",
         f"{IT}/test_git_import.py::test_ssh_key", f"{IT}/test_git_import.py::test_credentials_stay_out")),
    Row("S9", "tar and link escapes", "each hostile member refused specifically; nothing written outside; HF links "
        "kept", (f"{UT}/test_artifacts_tarsafe.py", f"{IT}/test_artifact_runs.py::test_hostile_entries",
                 f"{IT}/test_artifact_runs.py::test_setuid"), hostile=True,
        limit="1e6 members: the `slow` variant builds 100k (the cap refuses it early); 10 GB sparse: refused on its "
        "header without writing it"),
    Row("S10", "loopback-only ports", "127.0.0.1 by default (`ss -ltn`); 0.0.0.0 needs field + flag and warns; "
        "duplicate host ports refused before create",
        (f"{TIER}/test_s10_ports.py", f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[all-",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[port-",
         f"{IT}/test_engine_create.py::test_busy_port")),
    Row("S11", "served endpoint's API key", "401 without the key on every inference route incl. /invocations, "
        "/tokenize; key not in env/labels/logs/DB",
        (f"{TIER}/test_s11_api_key.py", f"{IT}/test_quickstart.py::test_api_key_is_enforced",
         f"{IT}/test_quickstart.py::test_the_api_key_never_leaks"),
        limit="/health, /metrics, /version stay open, as in vLLM (loopback-only by S10); runner does not mint the "
        "key (the user's `{API_KEY}`, generated by `make quickstart`)"),
    Row("S12", "Jinja2 sandbox", "dunder walks, attr filter, globals, huge range/repetition, undefined → "
        "ManifestError; output cap; < 100 ms",
        (f"{UT}/test_manifest_template.py", f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[",
         ), hostile=True),
    Row("S13", "privilege requests", "privileged, host net/pid/ipc, cap_add, docker.sock or / binds, devices → "
        "refused at validation, nothing created",
        (f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[privilege-",
         f"{UT}/test_hostile_inputs.py::test_hostile_input_is_refused_cleanly[hostpath-",
         f"{IT}/test_engine_imports.py::test_sensitive_host_paths"), hostile=True),
)
# S12 cites only the template cases of test_hostile_inputs
S12_HOSTILE = ("hostile-template", "template-")

FIXED = (
    ("runner/store.py `_start_ticks`/`process_alive`",
     "a killed creator not yet reaped by its parent (a zombie) counted as alive, so its run stayed `pending` "
     "and `terminate` waited 60 s for it", "test_r01_create_crash.py::test_an_unreaped_creator_counts_as_dead"),
    ("runner/store.py `_connect` → `_enable_wal`",
     "processes opening a new store at once failed with \"cannot open the run store: database is locked\" "
     "(~5% of them): switching to WAL returns SQLITE_BUSY without calling the busy handler; now retried within "
     "the 30 s busy timeout", "test_r03_concurrency.py::test_a_new_store_opened_by_many_processes_at_once "
     "(and R2's first round, R3's start)"),
    ("runner/engine/reconcile.py `_creating`",
     "a reconcile holding a stale `initializing` record removed the container of a run whose creator had "
     "meanwhile marked it running and exited (the guarded state change came after the removal): one run in 200 "
     "lost under R3's load. The guarded change is now the claim, removal follows it",
     "test_r03_concurrency.py::test_a_reconcile_holding_a_stale_record_leaves_a_finished_create_alone"),
    ("runner/engine/reconcile.py `sweep_ended`, runner/engine/gc.py, runner/cli/run_create.py `_settle_same_name`",
     "a kill landing while `POST /containers/create` was in flight left a container that the engine made after "
     "a `runner list` had recorded the run as failed; it stayed until `gc`'s 60 s grace, so a re-create of the "
     "name showed two containers (seen once in R1's random kills). Containers of ended runs are now removed by "
     "the next reconcile, by `gc` without the grace, and before a re-create of the name",
     "test_r01_create_crash.py::test_a_dangling_container_of_a_crashed_create_is_swept[create-again|gc|list]"),
    ("runner/store.py `get`",
     "`runner terminate NAME` (the hint `create` prints) failed with \"matches several runs\" once a crashed "
     "attempt had the same name; a name now means its active run", "test_r01_create_crash.py::"
     "test_after_a_crash_the_name_still_means_the_live_run"),
    ("runner/cli/runs_cmd.py `_status`",
     "`list` cut long reasons mid-parenthesis (\"failed (interrupted while creating (the creating)\"); now at "
     "the first clause", "test_r01_create_crash.py::test_after_a_crash_the_name_still_means_the_live_run"),
    ("runner/engine/outcome.py `classify`",
     "exit code 255 was reported as \"killed by signal 127\": 128+n is a signal only for a real signal number",
     "test_r07_exit_codes.py::test_exit_codes_match_the_engine_exactly[255]"),
    ("runner/cli/run_create.py `_Signalled`, `_foreground_signals`",
     "SIGTERM while a run was being created recorded it as `failed: internal error (_Signalled)`; SIGHUP (a "
     "closed terminal) killed the CLI and left the run going. SIGTERM/SIGHUP are now handled like SIGINT: "
     "`terminated`, exit 143/129",
     "test_r17_foreground_signals.py::test_signal_while_the_run_is_being_created, "
     "::test_first_signal_stops_the_run_gracefully[SIGHUP-129]"),
)

SEMANTICS = (
    "**R17 — foreground signals.** While `create --wait` runs, the first SIGINT, SIGTERM or SIGHUP stops the run "
    "it started gracefully (SIGTERM to the run's processes, the run's grace, SIGKILL); the run ends `terminated` "
    "with its exit code and the CLI exits 130 / 143 / 129. A second SIGINT/SIGTERM during that stop kills the "
    "container at once. A signal while the run is still being created ends it `terminated` (\"interrupted while "
    "creating\") and removes what was made. Without `--wait`, `create` returns once the container runs.",
    "**R7 — `create --wait` exit status.** 0 when the run is ready (or completed before it was), 1 when it failed "
    "(the last log lines are printed), never the container's own code, which `list`/`describe` show exactly.",
    "**R6 — stop.** Containers run under tini with `TINI_KILL_PROCESS_GROUP=1`; runner's entrypoint waits for the "
    "steps' own shutdown and exits 143, so a step whose trap exits 0 still ends the run with 143.",
    "**R8 — OOM on this engine.** Docker 20.10 on cgroup v1 sets `OOMKilled` when any process of the container "
    "was OOM-killed; runner reports \"OOM killed\" only with exit 137, and a completed run with a child OOM kill "
    "gets a warning.",
    "**R15 — no engine.** Every command that needs the engine exits 3 naming the address; `list` and `gc` on a "
    "machine with no runs answer without it; nothing is written.",
    "**Oracle (c).** Stronger than §7: a `pending`/`initializing`/`stopping` record whose owner is dead is a "
    "violation at once (every reconcile handles it immediately, no grace).",
)


@dataclass
class Case:
    nodeid: str
    outcome: str  # passed | failed | xfailed | skipped
    seconds: float
    message: str = ""


@dataclass
class RowResult:
    row: Row
    cases: list[Case] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.row.skip_run:
            return "cannot run here"
        if not self.cases:
            return "not run"
        outcomes = [c.outcome for c in self.cases]
        if "failed" in outcomes:
            return "FAIL"
        passed = outcomes.count("passed")
        extra = []
        if "xfailed" in outcomes:
            extra.append(f"{outcomes.count('xfailed')} known bug(s)")
        if "skipped" in outcomes:
            extra.append(f"{outcomes.count('skipped')} skipped")
        word = "partial" if self.row.limit and self.row.id in ("S3", "R14") else "pass"
        return f"{word} ({passed}/{len(outcomes)}" + (", " + ", ".join(extra) if extra else "") + ")"


def run_tests(out: Path, tier_only: bool) -> float:
    targets = [TIER]
    if not tier_only:
        cited = sorted({p.split("::")[0] + ("::" + p.split("::")[1].split("[")[0] if "::" in p else "")
                        for row in ROWS for p in row.proofs if not p.startswith(TIER)})
        targets += _functions(cited)
    env = {**os.environ, "RUNNER_RELIABILITY_REPORT": str(out / "figures.json"), "RUNNER_REQUIRE_DOCKER": "1"}
    (out / "figures.json").unlink(missing_ok=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                    f"--junitxml={out / 'junit.xml'}", *targets], cwd=REPO, env=env, check=False)
    return time.monotonic() - started


def _functions(selectors: list[str]) -> list[str]:
    """Node ids pytest accepts: whole files, or every test function whose name starts with the selector."""
    import ast

    found: list[str] = []
    for selector in selectors:
        path, _, prefix = selector.partition("::")
        if not prefix:
            found.append(path)
            continue
        tree = ast.parse((REPO / path).read_text())
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith(prefix)]
        found += [f"{path}::{name}" for name in names]
    return list(dict.fromkeys(found))


def parse_junit(path: Path) -> list[Case]:
    cases = []
    for element in ET.parse(path).iter("testcase"):  # noqa: S314 - pytest's own output, written just now
        file = element.get("file") or element.get("classname", "").replace(".", "/") + ".py"
        nodeid = f"{file}::{element.get('name')}"
        outcome, message = "passed", ""
        for child in element:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", child.get("message", "")
                break
            if child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                outcome, message = ("xfailed" if xfail else "skipped"), child.get("message", "")
        cases.append(Case(nodeid, outcome, float(element.get("time") or 0), message))
    return cases


def matches(row: Row, case: Case) -> bool:
    if row.id == "S12" and "test_hostile_inputs.py" in case.nodeid:
        return any(f"[{p}" in case.nodeid for p in S12_HOSTILE)
    return any(case.nodeid.startswith(p) for p in row.proofs)


def aggregate(cases: list[Case], figures: list[dict[str, Any]]) -> list[RowResult]:
    results = []
    for row in ROWS:
        result = RowResult(row, [c for c in cases if matches(row, c)])
        sums: dict[str, float] = defaultdict(float)
        for entry in figures:
            if entry.get("row") == row.id:
                for key, value in entry.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "seed":
                        sums[key] = max(sums[key], value) if key.endswith(("_s", "p99", "seconds")) else \
                            sums[key] + value
        if row.hostile:
            sums["hostile_inputs"] += sum(1 for c in result.cases if not c.nodeid.startswith(TIER))
        result.figures = dict(sums)
        results.append(result)
    return results


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value))


def _figures(result: RowResult) -> str:
    f = result.figures
    parts = []
    if "faults_injected" in f:
        parts.append(f"faults {_fmt(f['faults_injected'])}, survived {_fmt(f.get('faults_survived', 0))}")
    if "hostile_inputs" in f:
        parts.append(f"hostile inputs {_fmt(f['hostile_inputs'])}")
    if "leaks_found" in f:
        parts.append(f"leaks {_fmt(f['leaks_found'])}")
    skip = {"faults_injected", "faults_survived", "hostile_inputs", "leaks_found"}
    parts += [f"{key.replace('_', ' ')} {_fmt(value)}" for key, value in sorted(f.items()) if key not in skip]
    return "; ".join(parts) or "—"


def _proofs(row: Row) -> str:
    shown = []
    for proof in row.proofs:
        path, _, test = proof.partition("::")
        name = Path(path).name + (f"::{test.rstrip('[')}…" if test else "")
        shown.append(f"`{name}`")
    return "<br>".join(shown) or "—"


def _machine() -> str:
    def cmd(*args: str) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except OSError:
            return "?"

    docker = cmd("docker", "info", "--format", "Docker {{.ServerVersion}}, cgroup v{{.CgroupVersion}}")
    return (f"{os.cpu_count()} CPUs, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
            f"{docker}, Python {platform.python_version()}")


def render(results: list[RowResult], cases: list[Case], wall_s: float | None, tier_only: bool) -> str:
    tier = [c for c in cases if c.nodeid.startswith(TIER)]
    counts = {o: sum(1 for c in cases if c.outcome == o) for o in ("passed", "failed", "xfailed", "skipped")}
    total = defaultdict(float)
    for result in results:
        for key in ("faults_injected", "faults_survived", "hostile_inputs", "leaks_found"):
            total[key] += result.figures.get(key, 0)
    lines = [
        "# Reliability: what is proved, by which test, with what figures",
        "",
        "Generated by `scripts/reliability_report.py` — do not edit by hand; rerun it "
        "(`.venv/bin/python scripts/reliability_report.py`). The contract and the row definitions are "
        "`reliability.md` (workplace reference, R1–R17 and S1–S13); the tests are in `tests/reliability/` (one "
        "module per row family, all marked `docker`, part of `make test`) plus the existing tests each row cites.",
        "",
        f"Run of {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} on {_machine()}"
        + (f"; wall time {wall_s / 60:.1f} min" if wall_s else "")
        + (" (reliability tier only: cited tests not run)" if tier_only else "") + ".",
        "",
        f"**Totals:** {counts['passed']} passed, {counts['failed']} failed, {counts['xfailed']} known bugs (strict "
        f"xfail), {counts['skipped']} skipped; the tier alone: {len(tier)} tests in "
        f"{sum(c.seconds for c in tier) / 60:.1f} min. Faults injected {_fmt(total['faults_injected'])}, survived "
        f"{_fmt(total['faults_survived'])}; hostile inputs tried {_fmt(total['hostile_inputs'])}; secret leaks found "
        f"{_fmt(total['leaks_found'])}.",
        "",
        "| Row | Property (pass criterion) | Proved by | Result | Figures |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        row = result.row
        lines.append(f"| {row.id} | **{row.title}** — {row.criterion} | {_proofs(row)} | {result.status} | "
                     f"{_figures(result)} |")
    lines += ["", "## Rows or parts that cannot pass here", ""]
    lines += [f"- **{r.row.id}** ({r.row.title}): {r.row.limit}." for r in results if r.row.limit]
    lines += ["", "## Bugs found", "", "Fixed (each found by the test named):", ""]
    lines += [f"- `{where}`: {what}. Test: `{test}`." for where, what, test in FIXED]
    open_bugs = sorted({c.message.removeprefix("reason: ").strip() for c in cases if c.outcome == "xfailed"
                        and "BUG" in c.message})
    lines += ["", "Open (in code other engineers own; each is a failing test marked `xfail(strict=True)`, so the "
              "fix turns it into a failure that asks for the marker to go):", ""]
    lines += [f"- {bug}" for bug in open_bugs] or ["- none"]
    failed = [c for c in cases if c.outcome == "failed"]
    if failed:
        lines += ["", "## Failing in this run", ""] + [f"- `{c.nodeid}`: {c.message[:300]}" for c in failed]
    lines += ["", "## Semantics the tests pin down", ""] + [f"- {text}" for text in SEMANTICS]
    lines += ["", "## Time budget", "",
              "The tier runs in `make test` with everything else (`pytest tests`). Nothing in it is marked `slow`: "
              "every row runs at the table's full size by default (R1 18 checkpoint + 20 random kills, R2 50 "
              "racing rounds, R3 8 × 25 creates + 4 loopers, R4 30 runs, R8 10 + 10, R10 20 + 5 kills, R13 50 "
              "kills). The slowest tests of this run:", ""]
    slowest = sorted(tier, key=lambda c: c.seconds, reverse=True)[:8]
    lines += [f"- `{c.nodeid.removeprefix(TIER + '/')}`: {c.seconds:.0f} s" for c in slowest]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier-only", action="store_true", help="run tests/reliability only")
    parser.add_argument("--reuse", type=Path, help="render from DIR/junit.xml and DIR/figures.json without running")
    parser.add_argument("--keep", type=Path, help="keep junit.xml and figures.json in this directory")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reliability.md")
    args = parser.parse_args()
    wall = None
    if args.reuse:
        work = args.reuse
    else:
        work = args.keep or Path(tempfile.mkdtemp(prefix="reliability-"))
        work.mkdir(parents=True, exist_ok=True)
        wall = run_tests(work, args.tier_only)
    cases = parse_junit(work / "junit.xml")
    figures = json.loads((work / "figures.json").read_text()) if (work / "figures.json").exists() else []
    results = aggregate(cases, figures)
    args.out.write_text(render(results, cases, wall, args.tier_only))
    print(f"wrote {args.out} ({len(cases)} test cases; data in {work})")
    return 1 if any(c.outcome == "failed" for c in cases) else 0


if __name__ == "__main__":
    raise SystemExit(main())
