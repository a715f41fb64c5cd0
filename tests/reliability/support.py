"""Helpers shared by the reliability tests: manifests, subprocess CLIs that can be signalled, store reads.

Everything drives the installed `runner` binary (`.venv/bin/runner`) when the process itself matters
(SIGKILL, SIGINT, exit status), and `kit.cli` (in-process) when only the answer does.
"""

from __future__ import annotations

import base64
import math
import os
import signal
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle import check_consistency, read_records
from runkit import BUSYBOX, RUNNER_BIN, RunKit, batch  # noqa: F401 - batch: re-exported for the tier

# What no command may ever print, whatever happened to it.
FORBIDDEN = ("Traceback", "internal error", "database is locked", "database table is locked", "SQLITE_BUSY",
             "the run store is busy")


def service(name: str, *, port: int = 8080, extra: str = "") -> str:
    """A GPU-less service: busybox httpd on `port`, published on any free loopback port."""
    return f"""
        name: {name}
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        {extra}
        run:
          - command: |
              mkdir -p /www && echo ok > /www/index.html
              exec httpd -f -p {port} -h /www
        ports:
          - {{name: web, type: http, port: {port}, host_port: 0}}
    """


@dataclass(frozen=True)
class Proc:
    code: int
    out: str
    err: str
    elapsed: float
    cpu_s: float = 0.0  # on-CPU time of the process (its main thread), from /proc/PID/schedstat
    queued_s: float = 0.0  # time it was runnable but waiting for a CPU (run-queue delay)

    @property
    def text(self) -> str:
        return self.out + self.err


def runner_env(kit: RunKit, env: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "RUNNER_HOME": str(kit.home), **(env or {})}


def spawn(kit: RunKit, *args: str, env: Mapping[str, str] | None = None, new_session: bool = False
          ) -> subprocess.Popen[str]:
    """The installed `runner ARGS` started in the background (stdout/stderr captured)."""
    return subprocess.Popen([str(RUNNER_BIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=runner_env(kit, env), start_new_session=new_session)


def finish(proc: subprocess.Popen[str], started: float, timeout: float = 180.0) -> Proc:
    out, err = proc.communicate(timeout=timeout)
    return Proc(proc.returncode, out, err, time.monotonic() - started)


def run(kit: RunKit, *args: str, env: Mapping[str, str] | None = None, timeout: float = 180.0) -> Proc:
    started = time.monotonic()
    return finish(spawn(kit, *args, env=env), started, timeout)


def run_measured(kit: RunKit, *args: str, env: Mapping[str, str] | None = None, timeout: float = 180.0) -> Proc:
    """Like `run`, plus the scheduler's account of the process: on-CPU time and run-queue wait.

    On an oversubscribed machine a CLI's wall time is mostly waiting for a CPU; the run-queue delay
    (read from /proc/PID/schedstat once the process has exited, before it is reaped) separates that
    from what the command itself spends on locks, the engine and its own work.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen([str(RUNNER_BIN), *args], stdout=out, stderr=err, text=True, env=runner_env(kit, env))
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            elapsed = time.monotonic() - started
            on_cpu, queued, _ = (int(v) for v in Path(f"/proc/{proc.pid}/schedstat").read_text().split())
        finally:
            proc.wait(timeout=timeout)
        out.seek(0)
        err.seek(0)
        return Proc(proc.returncode, out.read(), err.read(), elapsed, on_cpu / 1e9, queued / 1e9)


def kill_after(kit: RunKit, args: Sequence[str], delay_s: float, *, sig: int = signal.SIGKILL,
               env: Mapping[str, str] | None = None) -> tuple[Proc, bool]:
    """Start `runner ARGS`, send `sig` after `delay_s` (if it still runs); (result, whether the signal landed)."""
    started = time.monotonic()
    proc = spawn(kit, *args, env=env)
    try:
        proc.wait(timeout=delay_s)
        landed = False
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        landed = True
    return finish(proc, started), landed


def assert_clean_output(*outputs: str | Proc) -> None:
    for output in outputs:
        text = output.text if isinstance(output, Proc) else output
        for word in FORBIDDEN:
            assert word not in text, f"{word!r} in output:\n{text[-3000:]}"


def assert_consistent(kit: RunKit, *, grace_s: float = 60.0, context: str = "") -> None:
    problems = check_consistency(kit, kit.store_id if kit.home.joinpath("runner.db").exists() else None,
                                 grace_s=grace_s)
    assert problems == [], f"{context}: inconsistent state:\n" + "\n".join(problems)


def records(kit: RunKit) -> dict[str, Any]:
    """Run records by id, read-only (no reconcile)."""
    return {record.id: record for record in read_records(kit.home)}


def store_containers(kit: RunKit, **filters: str) -> list[dict[str, Any]]:
    """This store's containers (engine summaries), optionally narrowed by more labels."""
    labels = [f"ai.runner.store={kit.store_id}"] + [f"{key}={value}" for key, value in filters.items()]
    return list(kit.client.api.containers(all=True, filters={"label": labels}))


def named_containers(kit: RunKit, name: str) -> list[dict[str, Any]]:
    return [c for c in store_containers(kit) if c["Labels"].get("ai.runner.name") == name]


def terminate_all(kit: RunKit, run_ids: Iterable[str], *, grace: str = "1", workers: int = 3) -> list[Proc]:
    """`runner terminate` over many runs, split across a few processes (as several users would)."""
    ids = list(run_ids)
    if not ids:
        return []
    chunks = [ids[i::workers] for i in range(workers) if ids[i::workers]]
    started = time.monotonic()
    procs = [spawn(kit, "terminate", "--grace", grace, *chunk) for chunk in chunks]
    results = [finish(proc, started, timeout=600) for proc in procs]
    for result in results:
        assert result.code == 0, result.text[-2000:]
    return results


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))  # nearest rank
    return ordered[index]


def home_files(home: Path, *, skip: tuple[str, ...] = ("secrets",)) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file() and not p.is_symlink()
            and p.relative_to(home).parts[0] not in skip]


def forms(value: str) -> set[str]:
    """Every form a leaked secret could take: raw, URL-encoded, and base64 / URL-safe base64, whole and at
    each byte alignment inside a longer stream (the 4 characters at either end depend on neighbours)."""
    raw = value.encode()
    found = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), urllib.parse.quote(value)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        found |= {whole, whole.rstrip("=")}
        for offset in (0, 1, 2):
            found.add(encode(b"\0" * offset + raw).decode()[4 if offset else 0:-4])
    return found
