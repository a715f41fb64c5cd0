"""A run's life on the real engine: steps in one shell session, exit codes, terminate with a grace
period, max_runtime enforced inside the container, and termination protection (idle).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from runkit import BUSYBOX, RunKit, batch


def _engine_time(text: str) -> float:
    """Docker's RFC 3339 nanosecond timestamps, to the microsecond."""
    main, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{main}.{fraction[:6] or '0'}+00:00").timestamp()


def test_steps_share_one_session_in_order_with_wait_workdir_and_first_failure(kit: RunKit):
    created = kit.create(f"""
        name: steps
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        env: {{GREETING: hello-env}}
        run:
          - command: |
              echo "step1 pwd=$(pwd) greeting=$GREETING"
              (while :; do date +%s > /tmp/beat; sleep 0.2; done) &
              echo $! > /tmp/beat.pid
              date +%s > /tmp/t1
            workdir: /var
          - wait: 2s
          - command: |
              echo "step3 pwd=$(pwd)"
              kill -0 "$(cat /tmp/beat.pid)" && echo "background still alive"
              echo "waited=$(( $(date +%s) - $(cat /tmp/t1) ))"
            workdir: /tmp
          - command: exit 42
          - command: echo never-printed
    """)
    run_id = created["id"]
    assert kit.wait_exit(run_id) == 42
    logs = kit.cli("logs", run_id).out
    assert logs.index("step1 pwd=/var greeting=hello-env") < logs.index("step3 pwd=/tmp")
    assert "background still alive" in logs
    waited = re.search(r"waited=(\d+)", logs)
    assert waited and int(waited.group(1)) >= 2, logs
    assert "never-printed" not in logs
    run = kit.listing()[run_id]
    assert (run["status"], run["exit_code"]) == ("failed", 42)
    assert run["reason"] == "exit code 42 (step 4/5)"
    kit.assert_clean()


@pytest.mark.parametrize(("command", "code", "status", "reason"), [
    ("exit 0", 0, "completed", "exit code 0"),
    ("exit 1", 1, "failed", "exit code 1"),
    ("exit 42", 42, "failed", "exit code 42"),
    ("kill -9 $$", 137, "failed", "killed (SIGKILL)"),
    ("sh -c 'kill -9 $$'", 137, "failed", "killed (SIGKILL)"),
], ids=["0", "1", "42", "kill-9-session", "kill-9-child"])
def test_exit_codes_are_read_from_the_engine(kit: RunKit, command: str, code: int, status: str, reason: str):
    run_id = kit.create(f"""
        name: exit
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        run:
          - command: echo started; {command}
          - command: echo not-reached
    """)["id"]
    assert kit.wait_exit(run_id) == code
    state = kit.inspect(run_id)["State"]
    assert state["ExitCode"] == code and state["OOMKilled"] is False
    assert ("not-reached" in kit.cli("logs", run_id).out) == (code == 0)  # the first failing step ends the run
    run = kit.listing()[run_id]
    assert run["status"] == status and run["exit_code"] == code
    assert run["reason"].startswith(reason), run["reason"]
    kit.assert_clean()


def test_oom_kill_is_reported_as_such(kit: RunKit):
    run_id = kit.create(f"""
        name: oom
        resources: {{cpu: 1, memory: 64Mi}}
        image: {BUSYBOX}
        run:
          - command: |
              echo allocating
              hog=$(head -c 300000000 /dev/zero | tr '\\0' a)
              echo not-reached
    """)["id"]
    assert kit.wait_exit(run_id) == 137
    assert kit.inspect(run_id)["State"]["OOMKilled"] is True
    run = kit.listing()[run_id]
    assert (run["status"], run["exit_code"], run["reason"]) == ("failed", 137, "OOM killed (out of memory)")
    kit.assert_clean()


def _wait_for_log(kit: RunKit, wait_for, run_id: str, text: str) -> None:
    wait_for(lambda: text in kit.cli("logs", run_id).out, what=f"{text!r} in the logs", timeout=30)


def test_terminate_kills_a_sigterm_ignoring_step_after_the_grace(kit: RunKit, wait_for):
    run_id = kit.create(batch("job", "trap '' TERM\necho trap-set\nwhile :; do sleep 1; done"))["id"]
    _wait_for_log(kit, wait_for, run_id, "trap-set")
    started = time.monotonic()
    result = kit.run("terminate", run_id, "--grace", "2")
    elapsed = time.monotonic() - started
    assert result.code == 0, result.text
    assert elapsed < 2 + 2, f"terminate took {elapsed:.1f}s with --grace 2"
    assert elapsed >= 1.5, "the step ignores SIGTERM, so it can only have ended by SIGKILL after the grace"
    assert "exit code 137" in result.out
    run = kit.describe(run_id)
    assert (run["status"], run["exit_code"], run["reason"]) == ("terminated", 137, "terminated by user")
    kit.assert_clean()


def test_terminate_lets_a_trapping_process_exit_quickly(kit: RunKit, wait_for):
    step = "trap 'echo got-term; exit 0' TERM\necho trap-set\nwhile :; do sleep 0.2; done"
    run_id = kit.create(batch("job", step))["id"]
    _wait_for_log(kit, wait_for, run_id, "trap-set")
    started = time.monotonic()
    result = kit.cli("terminate", run_id, "--grace", "20")
    assert result.code == 0, result.text
    assert time.monotonic() - started < 10, "a process that handles SIGTERM must not wait out the grace"
    run = kit.describe(run_id)
    assert run["status"] == "terminated" and run["exit_code"] in (0, 143)
    assert "got-term" in kit.cli("logs", run_id).out
    kit.assert_clean()


def test_terminate_is_idempotent_and_takes_several_runs(kit: RunKit):
    first = kit.create(batch("one", "sleep 600"))["id"]
    second = kit.create(batch("two", "sleep 600"))["id"]
    result = kit.cli("terminate", first, second, "--json")
    assert result.code == 0, result.text
    before = {row["id"]: row for row in result.json()}
    assert {row["status"] for row in before.values()} == {"terminated"}
    kit.assert_clean()
    again = kit.cli("terminate", first, second, "--json")
    assert again.code == 0, again.text
    assert {row["id"]: row for row in again.json()} == before


def _runner_processes_for(home: Path) -> list[int]:
    """Live processes (other than this one) whose environment points at this RUNNER_HOME."""
    marker = f"RUNNER_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(("step", "code"), [("echo up", 143), ("trap '' TERM\nwhile :; do sleep 1; done", 137)],
                         ids=["graceful", "ignores-sigterm"])
def test_max_runtime_is_enforced_with_no_runner_process_alive(kit: RunKit, step: str, code: int):
    manifest = kit.manifest(batch("interactive", step,
                                  extra="interactive: {max_runtime: 3s, jupyter: {idle_timeout: 1m}}"))
    created = kit.run("create", "-f", manifest, "--grace", "3", "--json")
    assert created.code == 0, created.text
    run_id = created.json()["id"]
    assert _runner_processes_for(kit.home) == [], "create without --wait must not leave a process behind"

    assert kit.wait_exit(run_id, timeout=30) == code
    state = kit.inspect(run_id)["State"]
    lasted = _engine_time(state["FinishedAt"]) - _engine_time(state["StartedAt"])
    assert lasted >= 3 - 0.1, f"stopped after {lasted:.1f}s, before max_runtime"
    if code == 143:  # a process that honours SIGTERM ends at the deadline, without waiting out the grace
        assert lasted < 3 + 3, f"took {lasted:.1f}s"

    listed = kit.run("list", "--all", "--json")
    assert listed.code == 0, listed.text
    (run,) = listed.json()
    assert (run["status"], run["reason"], run["exit_code"]) == ("terminated", "max_runtime exceeded", code)
    assert "max_runtime (3s) exceeded" in kit.run("logs", run_id).text
    kit.assert_clean()


def test_termination_protection_goes_idle_then_terminates(kit: RunKit, wait_for):
    run_id = kit.create(batch("protected", "echo steps-done", extra="termination_protection: true"))["id"]
    wait_for(lambda: kit.listing()[run_id]["status"] == "idle", what="status idle after the steps", timeout=30)
    assert kit.container(run_id).status == "running"
    result = kit.cli("terminate", run_id)
    assert result.code == 0, result.text
    run = kit.describe(run_id)
    assert (run["status"], run["reason"], run["exit_code"]) == ("terminated", "terminated by user", 143)
    assert "steps-done" in kit.cli("logs", run_id).out
    kit.assert_clean()
