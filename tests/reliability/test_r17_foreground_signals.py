"""R17 — signals to a foreground `runner create --wait`.

Documented semantics (runner/cli/run_create.py, docs/reliability.md): while `create --wait` is in the
foreground, the first SIGINT, SIGTERM or SIGHUP stops the run it started gracefully (SIGTERM to the
run's processes, the run's grace, then SIGKILL); the run ends `terminated` with its exit code and the
command exits 128+signal (130, 143, 129). A second SIGINT/SIGTERM while that stop is in progress kills
the container at once. A signal that arrives while the run is still being created ends it
`terminated` ("interrupted while creating") and removes whatever it had made.

Pass criterion (reliability.md R17): the documented semantics for SIGINT, SIGTERM, SIGHUP and SIGINT to
the process group (a terminal's Ctrl-C), 4/4; the CLI exits within grace + 2 s of the signal; a second
SIGINT within the grace kills; consistency holds afterwards. Plus random moments: SIGINT or SIGTERM at a
uniform delay over the whole create (intent → image → imports → container → readiness wait).
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from oracle import check_consistency
from runkit import RunKit
from support import BUSYBOX, Proc, assert_clean_output, batch, finish, records, spawn, store_containers

import runner

RUNNER_PACKAGE = str(Path(runner.__file__).parent) + os.sep

GRACE_S = 3.0
NEVER_READY = "echo up\nsleep 600"  # a port is declared but nothing listens: --wait waits until stopped
IGNORES_TERM = "trap '' TERM\necho up\nwhile :; do sleep 1; done"
PORT = "ports:\n          - {name: web, type: http, port: 8080, host_port: 0}"
RANDOM_SIGNALS = 10


def _start(kit: RunKit, name: str, step: str, *, grace: float = GRACE_S, group: bool = False
           ) -> subprocess.Popen[str]:
    manifest = kit.manifest(batch(name, step, extra=PORT), f"{name}.yaml")
    return spawn(kit, "create", "-f", manifest, "--wait", "--grace", str(grace), new_session=group)


def _wait_running(kit: RunKit, wait_for, name: str, proc: subprocess.Popen[str]) -> str:
    def running() -> bool:
        assert proc.poll() is None, "create --wait ended on its own"
        return any(r.name == name and r.status == "running" for r in records(kit).values())

    wait_for(running, what=f"{name} to be running (and create --wait to be waiting)", timeout=60)
    return next(r.id for r in records(kit).values() if r.name == name)


def _after(kit: RunKit, run_id: str, result: Proc, *, code: int) -> dict:
    assert_clean_output(result)
    assert result.code == code, result.text
    assert f"stopping run {run_id}" in result.err, result.err
    record = records(kit)[run_id]
    assert record.status == "terminated" and record.exit_code is not None, record
    assert store_containers(kit, **{"ai.runner.run-id": run_id}) == []
    assert kit.cli("list").code == 0
    assert check_consistency(kit, grace_s=0) == []
    return {"status": record.status, "exit_code": record.exit_code, "reason": record.reason}


@pytest.mark.parametrize(("how", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129),
                                           ("SIGINT-to-group", 130)])
def test_first_signal_stops_the_run_gracefully(kit: RunKit, wait_for, figures, how: str, code: int):
    name = f"r17-{how.lower()}"
    group = how.endswith("-to-group")
    proc = _start(kit, name, NEVER_READY, group=group)
    run_id = _wait_running(kit, wait_for, name, proc)
    sig = getattr(signal, how.split("-")[0])
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does: the whole foreground process group
    else:
        proc.send_signal(sig)
    result = finish(proc, sent, timeout=60)
    outcome = _after(kit, run_id, result, code=code)
    assert outcome == {"status": "terminated", "exit_code": 143, "reason": "terminated by user"}
    assert result.elapsed < GRACE_S + 2, f"exited {result.elapsed:.1f}s after {how}"
    figures.add("R17", signals=1, kind=how, exit_s=round(result.elapsed, 2))
    kit.assert_clean()


def test_second_sigint_within_the_grace_kills(kit: RunKit, wait_for, figures):
    grace = 20.0
    proc = _start(kit, "r17-twice", IGNORES_TERM, grace=grace)
    run_id = _wait_running(kit, wait_for, "r17-twice", proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: records(kit)[run_id].status == "stopping", what="the graceful stop to begin", timeout=30)
    time.sleep(1.0)  # well inside the 20 s grace; the step ignores SIGTERM, so only the second signal ends it
    assert proc.poll() is None, "the first SIGINT must wait out the grace for a step that ignores SIGTERM"
    proc.send_signal(signal.SIGINT)
    result = finish(proc, sent, timeout=60)
    outcome = _after(kit, run_id, result, code=130)
    assert outcome["exit_code"] == 137, outcome  # killed, not stopped
    assert result.elapsed < 10, f"took {result.elapsed:.1f}s: the second SIGINT did not kill"
    figures.add("R17", signals=2, kind="second SIGINT", exit_s=round(result.elapsed, 2))
    kit.assert_clean()


@pytest.mark.parametrize(("how", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_signal_while_the_run_is_being_created(kit: RunKit, wait_for, figures, how: str, code: int):
    """The image phase is made slow (a setup build step that sleeps, unique per test so it is never cached):
    the signal lands while the run is `initializing`; the run ends `terminated`, nothing is left."""
    name = f"r17-building-{how.lower()}"
    manifest = kit.manifest(f"""
        name: {name}
        resources: {{preset: cpu-small}}
        image:
          url: {BUSYBOX}
          build:
            setup:
              - sleep 30 && echo {secrets.token_hex(8)}
        run:
          - command: sleep 600
    """, f"{name}.yaml")
    proc = spawn(kit, "create", "-f", manifest, "--wait")
    wait_for(lambda: any(r.name == name and r.status == "initializing" for r in records(kit).values()),
             what="the run to be initializing", timeout=60)
    time.sleep(1.0)  # into the build's `sleep 30` step
    sent = time.monotonic()
    proc.send_signal(getattr(signal, how))
    result = finish(proc, sent, timeout=60)
    assert_clean_output(result)
    assert result.code == code, result.text
    assert result.elapsed < 5, f"exited {result.elapsed:.1f}s after {how}"
    (record,) = records(kit).values()
    assert (record.status, record.reason) == ("terminated", "interrupted while creating"), record
    assert kit.cli("list").code == 0
    assert check_consistency(kit, grace_s=0) == []
    figures.add("R17", signals=1, kind=f"{how} while creating", exit_s=round(result.elapsed, 2))
    kit.assert_clean()


@pytest.mark.parametrize("delay_ms", [0, 3, 8, 15, 40, 120])
def test_signal_while_the_container_is_being_made(kit: RunKit, figures, delay_ms: int):
    """SIGTERM lands while `POST /containers/create` or `/start` is in flight (sent by the process itself,
    `delay_ms` after the `before_container_create` checkpoint). The request is allowed to finish, so the
    cleanup finds the container: the run ends `terminated` and nothing appears in the engine afterwards."""
    name = f"r17-inflight-{delay_ms}"
    manifest = kit.manifest(batch(name, "sleep 600"), f"{name}.yaml")
    started = time.monotonic()
    result = finish(spawn(kit, "create", "-f", manifest, "--wait", env={
        "RUNNER_FAULT_POINT": "before_container_create", "RUNNER_FAULT_AFTER_MS": str(delay_ms),
        "RUNNER_FAULT_SIGNAL": "TERM"}), started, timeout=60)
    assert_clean_output(result)
    assert result.code == 143, result.text
    (record,) = records(kit).values()
    assert record.status == "terminated", record
    time.sleep(1.0)  # a request cut short would make its container about now
    assert store_containers(kit) == [], "a container outlived its interrupted create"
    assert check_consistency(kit, grace_s=0) == []
    figures.add("R17", signals=1, kind="SIGTERM during the container requests")
    kit.assert_clean()


def test_signals_at_random_moments_of_create(kit: RunKit, wait_for, figures):
    """Anywhere in create --wait: the CLI exits 130/143 quickly, no traceback; whatever had been recorded
    ends `terminated` (never `failed`, never left active) and nothing stays in the engine."""
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    proc = _start(kit, "r17-calibrate", NEVER_READY)
    started = time.monotonic()
    _wait_running(kit, wait_for, "r17-calibrate", proc)
    window = time.monotonic() - started + 0.5
    proc.send_signal(signal.SIGINT)
    assert finish(proc, started).code == 130
    problems: list[str] = []
    while_importing = 0
    for n in range(RANDOM_SIGNALS):
        name = f"r17-random-{n}"
        sig = rng.choice((signal.SIGINT, signal.SIGTERM))
        delay = rng.uniform(0.0, window)
        proc = _start(kit, name, NEVER_READY)
        time.sleep(delay)  # the fault's random moment, not a wait for state
        sent = time.monotonic()
        proc.send_signal(sig)
        result = finish(proc, sent, timeout=60)
        context = f"seed {seed}, {sig.name} after {delay:.2f}s"
        starting = _interrupted_while_starting(result.text)
        if starting:
            while_importing += 1  # Python's default handler, before runner.entry's is in place; nothing made
        else:
            for word in ("Traceback", "internal error", "database is locked"):
                if word in result.text:
                    problems.append(f"{context}: {word!r} in output: {result.text[-800:]}")
        if result.code not in (130, 143, -sig) and not (starting and result.code == 1):
            problems.append(f"{context}: exit {result.code}: {result.text[-500:]}")
        if result.elapsed > GRACE_S + 2:
            problems.append(f"{context}: exited {result.elapsed:.1f}s after the signal")
        listed = kit.cli("list")
        assert listed.code == 0, listed.text
        mine = [r for r in records(kit).values() if r.name == name]
        for record in mine:
            if record.status != "terminated":
                problems.append(f"{context}: run ended {record.status} ({record.reason})")
        problems += [f"{context}: {p}" for p in check_consistency(kit, grace_s=0)]
    figures.add("R17", signals=RANDOM_SIGNALS, kind="random", seed=seed, failed=len(problems),
                during_interpreter_start=while_importing)
    assert problems == [], "\n".join(problems)
    kit.assert_clean()


def _interrupted_while_starting(text: str) -> bool:
    """A KeyboardInterrupt traceback from Python's own start-up (site, .pth files) or bin/runner importing
    runner.entry, before its handler exists: no frame is a function of runner's, only module top levels."""
    if "Traceback" not in text or not text.rstrip().endswith("KeyboardInterrupt"):
        return False
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', text)
    ours = [(path, where) for path, where in frames if path.startswith(RUNNER_PACKAGE) or path.endswith("/bin/runner")]
    return all(where == "<module>" for _, where in ours)


SLOW_CLICK = """import time
time.sleep(10)  # the CLI's first import, made slow so a signal lands in it
raise ImportError("never reached in this test")
"""


def test_ctrl_c_while_the_cli_is_still_importing(kit: RunKit, tmp_path):
    shim = tmp_path / "slow" / "click"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(SLOW_CLICK)
    proc = spawn(kit, "list", env={"PYTHONPATH": str(shim.parent)})
    time.sleep(1.0)  # inside the slow import
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    result = finish(proc, sent, timeout=30)
    # The shim's import sleeps 10 s and then fails: exiting 130 at once means the signal hit the import.
    assert result.code == 130 and result.elapsed < 5, result
    assert "Traceback" not in result.text and result.err.strip() == "interrupted", result.text
