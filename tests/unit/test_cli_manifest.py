"""The CLI surface of the manifest layer, in-process through `runner.cli.main.main`.

`--help`/`--version`, `validate` (text and JSON), `--debug`, the secret store commands (values
from stdin, never printed, 0600 files in a 0700 directory) and `create --dry-run` (text and
JSON plan: image action, entrypoint, mounts, loopback ports, GPUs, masked secrets, imports and
exports). Commands that only read must leave RUNNER_HOME uncreated.
"""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from runner import __version__
from runner.cli.main import COMMANDS, main

CANARY = "RNRCANARY7b1e9f0c2d4a6b8c0e1f2a3b"

PLAN_MANIFEST = """\
name: plan-demo
resources:
  cluster: vessl-gcp-oregon
  preset: gpu-l4-small
image: quay.io/vessl-ai/torch:2.3.1-cuda12.1-r5
import:
  /code/: git://github.com/vessl-ai/examples
  /cache: artifact://hf-cache
run:
  - command: python serve.py --port 18123
    workdir: /code
  - wait: 5s
ports:
  - {name: api, type: http, port: 18123, health_path: /health}
env:
  MODEL: gpt2
  HF_TOKEN: {secret: HF}
  WANDB_API_KEY: inline-but-secret-named
export:
  /cache: artifact://hf-cache
  /output/: vessl-artifact://
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """RUNNER_HOME for this test; it does not exist until something writes."""
    path = tmp_path / "runner-home"
    monkeypatch.setenv("RUNNER_HOME", str(path))
    monkeypatch.delenv("HF", raising=False)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def set_secret(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str,
               value: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(value))
    return run(capsys, "secret", "set", "--", name)


# -- help and version -----------------------------------------------------------------------------
def test_help_lists_every_command_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--help")
    assert (code, err) == (0, "")
    for name, (_, _, summary) in COMMANDS.items():
        assert f"  {name}" in out and summary in out
    assert "  Examples:\n    runner validate -f manifests/vllm-run.yaml\n" in out
    assert "    runner create -f vllm-run.yaml --dry-run --env API_KEY=...\n" in out
    assert "Exit codes: 0 ok, 1 run failed, 2 manifest or usage error, 3 Docker error" in out


@pytest.mark.parametrize("command", ["validate", "create", "secret"])
def test_subcommand_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"Usage: runner {command}" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"runner, version {__version__}\n", "")


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "valdate")
    assert code == 2
    assert "No such command 'valdate'" in err


# -- validate -------------------------------------------------------------------------------------
def test_validate_text_output(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, PLAN_MANIFEST)
    code, out, err = run(capsys, "validate", "-f", str(path))
    assert code == 0
    assert out == (f"{path}: valid — batch run 'plan-demo', image quay.io/vessl-ai/torch:2.3.1-cuda12.1-r5, 2 steps, "
                   "ports api:18123, 2 imports, 2 exports\n")
    assert err == (f"{path}:17:22: env.HF_TOKEN.secret: warning: secret HF was not found\n"
                   "    hint: pass --env HF=VALUE, add it to .env beside the manifest or export it, or store it: "
                   "`runner secret set HF`\n")
    assert not home.exists()


def test_validate_json_output(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, PLAN_MANIFEST)
    code, out, err = run(capsys, "validate", "-f", str(path), "--json", "--env", "HF=x")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"file": str(path), "valid": True, "name": "plan-demo", "type": "batch", "problems": []}
    code, out, _ = run(capsys, "validate", "-f", str(path), "--json")
    (problem,) = json.loads(out)["problems"]
    assert problem == {"file": str(path), "line": 17, "column": 22, "path": "env.HF_TOKEN.secret",
                       "severity": "warning", "message": "secret HF was not found",
                       "hint": "pass --env HF=VALUE, add it to .env beside the manifest or export it, or store it: "
                               "`runner secret set HF`", "policy": False}
    assert not home.exists()


def test_validate_json_failure_has_exit_code_and_no_stderr(tmp_path: Path, home: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: x\nresources: {}\nimage: x\nprivileged: true\n")
    code, out, err = run(capsys, "validate", "-f", str(path), "--json")
    assert (code, err) == (4, "")
    report = json.loads(out)
    assert report["valid"] is False
    assert [(p["path"], p["policy"]) for p in report["problems"]] == [("privileged", True)]


def test_validate_reads_stdin(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"name: piped\nresources: {}\nimage: x\n")))
    code, out, _ = run(capsys, "validate", "-f", "-")
    assert code == 0
    assert out == "<stdin>: valid — batch run 'piped', image x\n"


def test_bad_env_flag_is_a_usage_error(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, PLAN_MANIFEST)
    code, _, err = run(capsys, "validate", "-f", str(path), "--env", "NOEQUALS")
    assert code == 2
    assert err == "error: --env expects NAME=VALUE, got 'NOEQUALS'…\n  hint: e.g. --env API_KEY=abc\n"


def test_debug_shows_a_traceback_only_when_asked(tmp_path: Path, home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: x\nresources: {}\n")
    code, _, err = run(capsys, "validate", "-f", str(path))
    assert code == 2 and "Traceback" not in err
    code, _, err = run(capsys, "--debug", "validate", "-f", str(path))
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert "missing required key 'image'" in err


def test_internal_errors_are_one_line_without_debug(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import runner.cli.validate_cmd as validate_cmd

    def explode(request: Any) -> Any:
        raise RuntimeError(f"boom {CANARY}")

    monkeypatch.setattr(validate_cmd, "load_manifest", explode)
    path = write(tmp_path, PLAN_MANIFEST)
    code, out, err = run(capsys, "validate", "-f", str(path))
    assert (code, out) == (1, "")
    assert err == "internal error (RuntimeError); rerun with --debug for the traceback\n"
    code, _, err = run(capsys, "--debug", "validate", "-f", str(path))
    assert code == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError" in err


# -- secrets --------------------------------------------------------------------------------------
def test_secret_set_list_rm(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert set_secret(monkeypatch, capsys, "HF_TOKEN", CANARY + "\n") == (0, "stored secret HF_TOKEN\n", "")
    stored = home / "secrets" / "HF_TOKEN"
    assert stored.read_text() == CANARY  # the trailing newline of `echo … |` is dropped
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert sorted(p.name for p in (home / "secrets").iterdir()) == ["HF_TOKEN"]  # no temp file left

    code, out, err = run(capsys, "secret", "list")
    assert code == 0 and err == ""
    assert out.splitlines()[0].split() == ["NAME", "UPDATED"]
    assert out.splitlines()[1].startswith("HF_TOKEN  ")
    code, out, _ = run(capsys, "secret", "list", "--json")
    assert [entry["name"] for entry in json.loads(out)] == ["HF_TOKEN"]
    assert CANARY not in out

    assert run(capsys, "secret", "rm", "HF_TOKEN") == (0, "removed secret HF_TOKEN\n", "")
    assert not stored.exists()
    code, out, _ = run(capsys, "secret", "list")
    assert out == "no secrets; add one with: printf %s VALUE | runner secret set NAME\n"


def test_secret_set_overwrites_atomically(home: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    set_secret(monkeypatch, capsys, "API_KEY", "first")
    set_secret(monkeypatch, capsys, "API_KEY", "second")
    assert (home / "secrets" / "API_KEY").read_text() == "second"
    assert [p.name for p in (home / "secrets").iterdir()] == ["API_KEY"]


@pytest.mark.parametrize("name", ["1ABC", "has space", "a/b", "../x", "-x", "x" * 129, ".hidden", "é"])
def test_invalid_secret_names(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                              name: str) -> None:
    code, out, err = set_secret(monkeypatch, capsys, name, "value")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: invalid secret name {name!r}\n  hint: use letters, digits")
    assert not home.exists()


def test_empty_secret_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = set_secret(monkeypatch, capsys, "EMPTY", "\n")
    assert code == 2
    assert err.startswith("error: refusing to store an empty secret")


def test_removing_a_missing_secret(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "secret", "rm", "NOPE")
    assert code == 2
    assert err == "error: no secret named 'NOPE'\n  hint: see `runner secret list`\n"


def test_listing_secrets_creates_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "secret", "list")[0] == 0
    assert not home.exists()


def test_stored_secret_satisfies_validate_and_is_never_printed(tmp_path: Path, home: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    set_secret(monkeypatch, capsys, "HF", CANARY)
    path = write(tmp_path, PLAN_MANIFEST)
    for argv in (["validate", "-f", str(path)], ["validate", "-f", str(path), "--json"],
                 ["create", "--dry-run", "-f", str(path)], ["create", "--dry-run", "--json", "-f", str(path)]):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert CANARY not in out + err
        assert "secret HF was not found" not in err


# -- create --dry-run -----------------------------------------------------------------------------
def test_dry_run_text(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, PLAN_MANIFEST)
    code, out, err = run(capsys, "create", "--dry-run", "-f", str(path), "--env", f"HF={CANARY}")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Plan for batch run 'plan-demo' (dry run: nothing created)"
    assert lines[1] == "  image      quay.io/vessl-ai/torch:2.3.1-cuda12.1-r5: use the local image, else pull it"
    assert "1 GPU(s)" in lines[2]
    assert "  imports    /code ← git https://github.com/vessl-ai/examples @ (default branch)" in lines
    assert "  steps      1. [/code] python serve.py --port 18123" in lines
    assert "             2. wait 5s" in lines
    assert "  ports      api 18123/http → 127.0.0.1:18123" in lines
    assert "  env        MODEL=gpt2" in lines
    assert "             HF_TOKEN=***" in lines and "             WANDB_API_KEY=***" in lines
    assert "  exports    /cache → artifact:hf-cache (new version)" in lines
    assert CANARY not in out and "inline-but-secret-named" not in out
    assert not home.exists()


def test_dry_run_json(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, PLAN_MANIFEST)
    code, out, err = run(capsys, "create", "--dry-run", "--json", "-f", str(path), "--env", f"HF={CANARY}")
    assert (code, err) == (0, "")
    plan = json.loads(out)
    run_id = plan["run"]["id"]
    assert plan["dry_run"] is True
    assert plan["image"] == {"ref": "quay.io/vessl-ai/torch:2.3.1-cuda12.1-r5",
                             "action": "use the local image, else pull it", "credential_name": None}
    container = plan["container"]
    assert container["entrypoint"] == ["/bin/sh", "/run/runner/entrypoint.sh"]
    assert container["command"] == []
    assert plan["steps"] == [{"command": "python serve.py --port 18123", "workdir": "/code"}, {"wait": "5s"}]
    assert container["env"]["MODEL"] == "gpt2"
    assert container["env"]["HF_TOKEN"] == container["env"]["WANDB_API_KEY"] == "***"
    assert container["secrets"] == ["/run/secrets/HF_TOKEN", "/run/secrets/WANDB_API_KEY"]
    assert container["init"] is True
    assert [(m["type"], m["target"]) for m in container["mounts"]] == [("bind", "/code"), ("volume", "/cache"),
                                                                      ("volume", "/output"), ("bind", "/run/runner")]
    assert container["mounts"][0]["source"] == str(home / "runs" / run_id / "imports" / "0-code")
    assert plan["ports"] == [{"name": "api", "container_port": 18123, "type": "http", "host": "127.0.0.1:18123",
                              "health_path": "/health"}]
    assert plan["resources"]["gpus"] == 1
    assert plan["imports"][0] == {"target": "/code", "git": "https://github.com/vessl-ai/examples",
                                  "ref": "(default branch)", "checkout": container["mounts"][0]["source"],
                                  "credential_name": None}
    assert plan["imports"][1]["artifact"] == "artifact:hf-cache"
    assert [(e["target"], e["to"]) for e in plan["exports"]] == [("/cache", "artifact:hf-cache"),
                                                                 ("/output", f"artifact:run-{run_id}/output")]
    assert CANARY not in out and "inline-but-secret-named" not in out
    assert not home.exists()


def test_dry_run_gpu_override_warns(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, PLAN_MANIFEST)
    code, out, _ = run(capsys, "create", "--dry-run", "--json", "--gpus", "0", "-f", str(path), "--env", "HF=x")
    assert code == 0
    plan = json.loads(out)
    assert plan["resources"]["gpus"] == 0
    assert "--gpus 0: running without the 1 GPU(s) the manifest asks for" in plan["warnings"]
    code, out, _ = run(capsys, "create", "--dry-run", "--gpus", "0", "-f", str(path), "--env", "HF=x")
    assert "  warning: --gpus 0: running without the 1 GPU(s) the manifest asks for" in out.splitlines()


def test_dry_run_build_image_action(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: b\nresources: {}\nimage:\n  url: python:3.11\n  build:\n    setup:\n"
                           "      - pip install $PKG\n")
    code, out, _ = run(capsys, "create", "--dry-run", "--json", "-f", str(path))
    assert code == 0
    image = json.loads(out)["image"]
    assert (image["action"], image["base_image"], image["setup"]) == ("build (skipped when unchanged)", "python:3.11",
                                                                      ["pip install $PKG"])


def test_dry_run_lists_every_unresolved_name(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, PLAN_MANIFEST.replace("MODEL: gpt2", "MODEL: ${MODEL_NAME}"))
    code, out, err = run(capsys, "create", "--dry-run", "-f", str(path))
    assert (code, out) == (2, "")
    assert [line.split(": ")[1] for line in err.splitlines()[1:] if not line.startswith("    ")] == [
        "env.MODEL", "env.HF_TOKEN.secret"]
    assert not home.exists()


def test_dry_run_without_steps_runs_the_image_command(tmp_path: Path, home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: plain\nresources: {}\nimage: nginx\nports: [8080]\n")
    code, out, _ = run(capsys, "create", "--dry-run", "--json", "-f", str(path))
    plan = json.loads(out)
    assert code == 0
    assert plan["steps"] == [{"command": "(the image's own entrypoint and command)"}]
    assert plan["container"]["command"] == "(image default)"
    assert plan["ports"][0]["host"].startswith("127.0.0.1:")


def test_template_vars_on_the_command_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = Path(__file__).resolve().parents[1] / "data" / "vessl" / "templates" / "hpt-mnist.yaml"
    code, out, err = run(capsys, "validate", "-f", str(template), "--var", "lr=0.0031622776", "--var",
                         "batch_size=64", "--var", "epochs=5")
    assert (code, err) == (0, "")
    assert out.startswith(f"{template}: valid — batch run 'hpt-mnist-lr-0.0032-bs-64'")
    code, _, err = run(capsys, "validate", "-f", str(template), "--var", "lr=0.1")
    assert code == 2
    assert err.splitlines()[1:] == [f"{template}:1:1: (root): template variable batch_size is not defined",
                                    "    hint: pass it on the command line: --var batch_size=VALUE"]
    assert not home.exists()
