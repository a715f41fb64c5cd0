"""The generated container entrypoint (`runner.entrypoint`), checked and executed for real.

The script is rendered with its directories (`/run/runner`, `/run/secrets`) moved under a temp
dir, written out with its step files, and run by dash (`/bin/sh`), busybox sh and bash in a new
session (the watchdog signals its whole process group, as tini does in the container). Every
rendered variant must also pass `sh -n` and `busybox sh -n`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import runner.entrypoint as entrypoint
from runner.entrypoint import EntrypointSpec, entrypoint_command, entrypoint_files, render_entrypoint
from runner.manifest.model import CommandStep, Step, WaitStep

BUSYBOX = shutil.which("busybox", path="/bin:/usr/bin")
SHELLS = {"dash": ["/bin/sh"], "busybox": [BUSYBOX or "busybox", "sh"]}


@dataclass
class Box:
    root: Path
    runner_dir: Path
    secrets_dir: Path
    work: Path

    @property
    def state(self) -> dict[str, str]:
        text = (self.runner_dir / "state").read_text()
        return dict(line.split("=", 1) for line in text.splitlines())


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Box:
    runner_dir, secrets_dir, work = tmp_path / "run" / "runner", tmp_path / "run" / "secrets", tmp_path / "work"
    for directory in (runner_dir, secrets_dir, work):
        directory.mkdir(parents=True)
    monkeypatch.setattr(entrypoint, "RUNNER_DIR", str(runner_dir))
    monkeypatch.setattr(entrypoint, "SECRETS_DIR", str(secrets_dir))
    monkeypatch.setattr(entrypoint, "ENTRYPOINT_PATH", f"{runner_dir}/entrypoint.sh")
    monkeypatch.setattr(entrypoint, "STATE_PATH", f"{runner_dir}/state")
    return Box(tmp_path, runner_dir, secrets_dir, work)


def install(spec: EntrypointSpec) -> Path:
    for file in entrypoint_files(spec):
        path = Path(file.path)
        path.write_bytes(file.content)
        path.chmod(file.mode)
    return Path(entrypoint.ENTRYPOINT_PATH)


def start(box: Box, spec: EntrypointSpec, shell: str, *args: str) -> subprocess.Popen[str]:
    script = install(spec)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(box.root)}
    command = [*SHELLS[shell], str(script)] if shell in SHELLS else ["/bin/sh", str(script)]
    if shell in SHELLS:
        env["__RUNNER_SHELL"] = "sh"  # stay in this shell instead of re-executing bash
    return subprocess.Popen([*command, *args], cwd=box.work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def execute(box: Box, spec: EntrypointSpec, shell: str = "dash", *args: str,
            timeout: float = 20) -> tuple[int, str, str]:
    process = start(box, spec, shell, *args)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, out, err


def steps(*commands: str | Step) -> tuple[Step, ...]:
    return tuple(CommandStep(c) if isinstance(c, str) else c for c in commands)


ALL_SHELLS = pytest.mark.parametrize("shell", ["dash", "busybox", "bash"])


# -- syntax ---------------------------------------------------------------------------------------
SPECS = {
    "plain": EntrypointSpec(steps=steps("echo hi")),
    "everything": EntrypointSpec(steps=steps(CommandStep("make", "/code/my app's dir"), WaitStep(2.5, "2.5s"), "x"),
                                 secret_env=("HF_TOKEN", "API_KEY"), max_runtime_s=3600.5, grace_s=7.2,
                                 stay_idle=True),
    "exec": EntrypointSpec(steps=(), exec_original=True),
    "idle-only": EntrypointSpec(steps=(), stay_idle=True),
}


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("checker", ["dash", "busybox"])
def test_rendered_script_is_valid_posix_sh(tmp_path: Path, name: str, checker: str) -> None:
    if checker == "busybox" and BUSYBOX is None:
        pytest.skip("busybox is not installed")
    script = tmp_path / "entrypoint.sh"
    script.write_text(render_entrypoint(SPECS[name]))
    result = subprocess.run([*SHELLS[checker], "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_syntax_error_is_caught_by_the_checker(tmp_path: Path) -> None:
    script = tmp_path / "broken.sh"
    script.write_text(render_entrypoint(SPECS["plain"]) + "if then fi\n")
    assert subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, check=False).returncode != 0


def test_files_and_command() -> None:
    files = entrypoint_files(EntrypointSpec(steps=steps("echo one", WaitStep(1, "1s"), "echo three")))
    assert [(f.path, f.mode) for f in files] == [("/run/runner/entrypoint.sh", 0o755),
                                                 ("/run/runner/step-1.sh", 0o644), ("/run/runner/step-3.sh", 0o644)]
    assert files[1].content == b"echo one\n"
    assert entrypoint_command() == ("/bin/sh", "/run/runner/entrypoint.sh")


def test_step_commands_are_not_part_of_the_entrypoint_text() -> None:
    text = render_entrypoint(EntrypointSpec(steps=steps("echo 'not in here' $SECRET")))
    assert "not in here" not in text


# -- behaviour ------------------------------------------------------------------------------------
@ALL_SHELLS
def test_steps_run_in_order_and_state_records_success(box: Box, shell: str) -> None:
    spec = EntrypointSpec(steps=steps("echo one >> log", "echo two >> log", "echo three >> log"))
    code, _, err = execute(box, spec, shell)
    assert code == 0, err
    assert (box.work / "log").read_text() == "one\ntwo\nthree\n"
    assert box.state == {"phase": "exited", "step": "3", "exit": "0"}
    assert err.splitlines() == ["[runner] step 1/3", "[runner] step 2/3", "[runner] step 3/3",
                                "[runner] all steps completed"]


def test_bash_is_preferred_when_the_image_has_it(box: Box) -> None:
    code, out, _ = execute(box, EntrypointSpec(steps=steps('echo "shell=$__RUNNER_SHELL bash=${BASH_VERSION:+yes}"')),
                           "bash")
    assert (code, out) == (0, "shell=bash bash=yes\n")


@ALL_SHELLS
def test_wait_step_sleeps_between_steps(box: Box, shell: str) -> None:
    spec = EntrypointSpec(steps=steps(": > a", WaitStep(0.4, "400ms"), ": > b"))
    code, _, err = execute(box, spec, shell)
    assert code == 0, err
    elapsed = ((box.work / "b").stat().st_mtime_ns - (box.work / "a").stat().st_mtime_ns) / 1e9
    assert 0.9 <= elapsed < 3  # rounded up to whole seconds
    assert "[runner] step 2/3: wait 400ms" in err


@ALL_SHELLS
def test_background_process_survives_into_the_next_step(box: Box, shell: str) -> None:
    spec = EntrypointSpec(steps=steps(
        "(sleep 0.3; echo from-background > bg) &",
        "i=0; while [ ! -s bg ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; cat bg",
    ))
    code, out, err = execute(box, spec, shell)
    assert (code, out) == (0, "from-background\n"), err


@ALL_SHELLS
def test_cd_and_export_do_not_leak_between_steps(box: Box, shell: str) -> None:
    spec = EntrypointSpec(steps=steps("export LEAK=1; cd /", 'echo "${LEAK:-unset} $(pwd)"'))
    code, out, _ = execute(box, spec, shell)
    assert (code, out) == (0, f"unset {box.work}\n")


@ALL_SHELLS
def test_first_failing_step_ends_the_run_with_its_code(box: Box, shell: str) -> None:
    spec = EntrypointSpec(steps=steps("echo one >> log", "false; echo still-runs >> log; exit 7", "echo three >> log"))
    code, _, err = execute(box, spec, shell)
    assert code == 7
    assert (box.work / "log").read_text() == "one\nstill-runs\n"
    assert "[runner] step 2/3 failed with exit code 7" in err
    assert box.state == {"phase": "exited", "step": "2", "exit": "7"}


@ALL_SHELLS
def test_a_step_fails_only_when_its_last_command_fails(box: Box, shell: str) -> None:
    assert execute(box, EntrypointSpec(steps=steps("false; true")), shell)[0] == 0
    assert execute(box, EntrypointSpec(steps=steps("true; false")), shell)[0] == 1


@ALL_SHELLS
def test_workdir_is_entered_and_a_missing_one_exits_2(box: Box, shell: str) -> None:
    odd = box.root / "my app's dir"
    odd.mkdir()
    code, out, _ = execute(box, EntrypointSpec(steps=(CommandStep("pwd", str(odd)),)), shell)
    assert (code, out) == (0, f"{odd}\n")
    missing = box.root / "nope"
    code, _, err = execute(box, EntrypointSpec(steps=(CommandStep("echo ran > ran", str(missing)),)), shell)
    assert code == 2
    assert f"[runner] step 1/1: workdir {missing} does not exist" in err
    assert not (box.work / "ran").exists()


@ALL_SHELLS
def test_secrets_are_exported_from_files(box: Box, shell: str) -> None:
    (box.secrets_dir / "HF_TOKEN").write_text("hf-secret-value\n")
    spec = EntrypointSpec(steps=steps('echo "${HF_TOKEN}|${API_KEY:-absent}"', 'env | grep -c "^HF_TOKEN="'),
                          secret_env=("HF_TOKEN", "API_KEY"))
    code, out, _ = execute(box, spec, shell)
    assert (code, out) == (0, "hf-secret-value|absent\n1\n")


@ALL_SHELLS
def test_without_steps_the_image_command_is_executed(box: Box, shell: str) -> None:
    code, out, _ = execute(box, EntrypointSpec(steps=(), exec_original=True), shell, "/bin/sh", "-c", "echo $0; exit 3",
                           "argv0")
    assert (code, out) == (3, "argv0\n")


@ALL_SHELLS
def test_termination_protection_idles_until_terminated(box: Box, shell: str) -> None:
    process = start(box, EntrypointSpec(steps=steps("echo done > log"), stay_idle=True), shell)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (box.runner_dir / "state").exists() and box.state.get("phase") == "idle":
                break
            time.sleep(0.05)
        assert box.state == {"phase": "idle", "step": "1", "exit": "0"}
        time.sleep(0.3)
        assert process.poll() is None, "the container would have stopped"
        os.killpg(process.pid, signal.SIGTERM)  # what tini does with TINI_KILL_PROCESS_GROUP=1
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143
    assert "[runner] steps finished; idle (termination protection) until terminated" in err
    assert "[runner] stop requested; waiting for processes to exit" in err


@ALL_SHELLS
def test_max_runtime_watchdog_stops_the_run(box: Box, shell: str) -> None:
    started = time.monotonic()
    code, _, err = execute(box, EntrypointSpec(steps=steps("sleep 30"), max_runtime_s=1, grace_s=1), shell,
                           timeout=15)
    assert time.monotonic() - started < 8
    assert code == 143
    assert "[runner] max_runtime (1s) exceeded; stopping the run" in err
