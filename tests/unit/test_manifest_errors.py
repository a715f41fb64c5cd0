"""What a user sees when a manifest is wrong: every problem at once, one line each, located.

`FILE:LINE:COL: json.path: message` plus an indented hint; exit 2 (4 for policy); no traceback.
The VESSL corpus is driven through the real CLI entry point (`runner.cli.main.main`): every
`invalid/` file fails at its `.expect` paths, every `valid/` and `manifests/` file passes, and
service/pipeline/2023 files each get the one message that explains them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "vessl"
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
VALID = sorted((CORPUS / "valid").glob("*.yaml")) + sorted((ROOT / "manifests").glob("*.yaml"))
OTHER = CORPUS / "other"
LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): ")


@pytest.fixture(autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home") / "runner-home"  # never created: validate writes nothing
    monkeypatch.setenv("RUNNER_HOME", str(home))
    return home


def validate(capsys: pytest.CaptureFixture[str], path: Path | str, *extra: str) -> tuple[int, str, str]:
    code = main(["validate", "-f", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


MISTAKES = """\
name: many-mistakes
resources:
  preset: cpu-small
  spot: OnDemand
imgae: python:3.11
import:
  /code:
    git:
      url: https://github.com/vessl-ai/examples.git
      ref: 1.10
run:
  - command: python train.py
  - workdir: /code
ports:
  - port: 70000
  - name: web
    type: http
    port: "8080"
env:
  MODEL-NAME: gpt2
"""


def test_every_mistake_is_reported_once_in_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mistakes.yaml"
    path.write_text(MISTAKES)
    code, out, err = validate(capsys, path)
    assert code == 2
    assert out == ""
    assert err.replace(str(path), "M") == """\
error: M: 8 problems found
M:1:1: (root): missing required key 'image'
    hint: The container image: a reference string or a `{url, credential_name}` map (required)
M:4:9: resources.spot: 'OnDemand' is not one of: "", SpotOnly, SpotFirst, OnDemandOnly
    hint: did you mean 'OnDemandOnly'?
M:5:1: imgae: unknown key 'imgae'
    hint: did you mean 'image'?
M:10:12: import["/code"].git.ref: expected a string or a {PLACEHOLDER}, got a number
    hint: YAML read 1.10 as a number; quote it: ref: "1.10"
M:13:5: run[1]: missing required key 'command'
M:15:11: ports[0].port: 70000 is out of range (1–65535)
    hint: A TCP/UDP port number, 1–65535
M:18:11: ports[1].port: expected an integer, got a string
    hint: A TCP/UDP port number, 1–65535
M:20:3: env: invalid name 'MODEL-NAME'
    hint: A name a POSIX shell can export, like `HF_TOKEN` or `learning_rate`: a letter or `_`, then letters, \
digits or `_` (no `-` or `.`)
"""


def test_json_output_carries_the_same_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = tmp_path / "mistakes.yaml"
    path.write_text(MISTAKES)
    code, out, err = validate(capsys, path, "--json")
    assert (code, err) == (2, "")
    report = json.loads(out)
    assert report["valid"] is False
    assert [(p["line"], p["column"], p["path"]) for p in report["problems"]] == [
        (1, 1, "(root)"), (4, 9, "resources.spot"), (5, 1, "imgae"), (10, 12, 'import["/code"].git.ref'),
        (13, 5, "run[1]"), (15, 11, "ports[0].port"), (18, 11, "ports[1].port"), (20, 3, "env"),
    ]
    assert report["problems"][3] == {
        "file": str(path), "line": 10, "column": 12, "path": 'import["/code"].git.ref', "severity": "error",
        "message": "expected a string or a {PLACEHOLDER}, got a number",
        "hint": 'YAML read 1.10 as a number; quote it: ref: "1.10"', "policy": False,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("image: python\nname: 1.10\n", 'YAML read 1.10 as a number; quote it: name: "1.10"'),
        ("image: python\ndescription: 2024\n", 'YAML read 2024 as an integer; quote it: description: "2024"'),
        ("image: python\nname: yes\n", 'YAML read yes as true or false; quote it: name: "yes"'),
    ],
)
def test_coerced_scalars_get_a_quoting_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                                            expected: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("resources: {}\n" + body)
    code, _, err = validate(capsys, path)
    assert code == 2
    assert f"    hint: {expected}\n" in err


def test_env_values_are_never_quoted_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("resources: {}\nimage: x\nenv:\n  HF: [hf_value_in_a_list]\n  Y: {value: [1], secret: true}\n")
    code, _, err = validate(capsys, path)
    assert code == 2
    assert "hf_value_in_a_list" not in err
    assert "got a list" in err


def test_no_traceback_without_debug(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(MISTAKES)
    _, _, err = validate(capsys, path)
    assert "Traceback" not in err


# -- the corpus -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_corpus_fails_at_the_expected_paths(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = validate(capsys, path)
    assert code == 2, err
    assert out == ""
    reported = [LOCATED.match(line) for line in err.splitlines()[1:] if not line.startswith("    ")]
    assert all(reported), err
    assert {m["file"] for m in reported if m} == {str(path)}
    paths = {m["path"] for m in reported if m}
    for expected in path.with_suffix(".expect").read_text().split():
        # runner may be more precise than the schema: an unknown key is reported at the key itself
        assert any(at_or_under(found, expected) for found in paths), f"{expected} not in {sorted(paths)}\n{err}"
    assert "Traceback" not in err


def at_or_under(found: str, expected: str) -> bool:
    return found == expected or (expected != "(root)" and found.startswith((expected + ".", expected + "[")))


def test_every_invalid_file_has_an_expect_file() -> None:
    assert INVALID
    assert {p.stem for p in INVALID} == {p.stem for p in (CORPUS / "invalid").glob("*.expect")}


@pytest.mark.parametrize("path", VALID, ids=[f"{p.parent.name}/{p.stem}" for p in VALID])
def test_valid_corpus_and_examples_pass(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = validate(capsys, path)
    assert code == 0, err
    assert out.startswith(f"{path}: valid — ")
    assert all(" warning: " in line for line in err.splitlines() if LOCATED.match(line)), err


@pytest.mark.parametrize(
    ("name", "line", "path", "message", "hint"),
    [
        ("service-vllm", 15, "(root)",
         "this is a VESSL Service revision (`vessl service create -f`), not a Run manifest",
         "runner executes Run manifests: drop `service:`/`autoscaling:`/`message:`; keep name, image, resources, "
         "import, run, ports and env"),
        ("service-tgi", 15, "(root)",
         "this is a VESSL Service revision (`vessl service create -f`), not a Run manifest", None),
        ("service-legacy-serve-revision", 1, "(root)",
         "this is a VESSL Service revision (`vessl service create -f`), not a Run manifest", None),
        ("pipeline-train-eval", 7, "(root)", "this is a VESSL Pipeline, not a Run manifest",
         "save one step's `spec.run_spec` as its own file and run that with runner"),
        ("pipeline-approval", 9, "(root)", "this is a VESSL Pipeline, not a Run manifest", None),
        ("legacy-2023-llama2c", 8, "volumes", "this uses VESSL's 2023 legacy Run syntax",
         "`volumes:` became `import:` (inputs such as git://… or vessl-model://…) and `export:` (outputs: "
         "`{artifact: true}` became vessl-artifact://); `resources.accelerators` may stay"),
        ("legacy-2023-lora", 7, "volumes", "this uses VESSL's 2023 legacy Run syntax", None),
        ("legacy-2023-segment-anything", 7, "volumes", "this uses VESSL's 2023 legacy Run syntax", None),
    ],
)
def test_non_run_files_get_exactly_one_specific_problem(capsys: pytest.CaptureFixture[str], name: str, line: int,
                                                        path: str, message: str, hint: str | None) -> None:
    file = OTHER / f"{name}.yaml"
    code, _, err = validate(capsys, file)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == f"error: {file}: 1 problem found"
    assert lines[1] == f"{file}:{line}:1: {path}: {message}"
    if hint is not None:
        assert lines[2] == f"    hint: {hint}"
    assert len(lines) == 3


def test_every_other_file_is_covered() -> None:
    covered = {"service-vllm", "service-tgi", "service-legacy-serve-revision", "pipeline-train-eval",
               "pipeline-approval", "legacy-2023-llama2c", "legacy-2023-lora", "legacy-2023-segment-anything"}
    assert {p.stem for p in OTHER.glob("*.yaml")} == covered


def test_legacy_interactive_spelling_alone_is_accepted_with_warnings(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("resources: {}\nimage: x\ninteractive:\n  runtime: 24h\n  ports:\n    - 8501\n")
    code, out, err = validate(capsys, path)
    assert code == 0
    assert err.splitlines()[::2] == [
        f"{path}:4:12: interactive.runtime: warning: `interactive.runtime` is the 2023 spelling",
        f"{path}:6:5: interactive.ports: warning: `interactive.ports` is the 2023 spelling",
    ]
    assert "ports port-8501:8501" in out


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = validate(capsys, tmp_path / "nope.yaml")
    assert code == 2
    assert err.splitlines() == [f"error: {tmp_path / 'nope.yaml'}: 1 problem found",
                                f"{tmp_path / 'nope.yaml'}: (root): file not found",
                                "    hint: check the path given to -f"]


# -- found by fuzzing -----------------------------------------------------------------------------
def test_placeholder_where_the_schema_wants_a_mapping_does_not_crash(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nresources: {}\nimage: x\nimport:\n  /code: {artifact: '{S1}'}\n")
    code, _, err = validate(capsys, path)
    assert (code, err.splitlines()[0]) == (0, f"{path}:5:21: import[\"/code\"].artifact: warning: placeholder {{S1}} "
                                               "has no value")
    assert main(["create", "--dry-run", "-f", str(path)]) == 2
    assert "placeholder {S1} has no value" in capsys.readouterr().err
    code, _, err = validate(capsys, path, "--env", "S1=x")
    assert code == 2
    assert f"{path}:5:21: import[\"/code\"].artifact: expected a mapping, got a string" in err
    assert "internal error" not in err


def test_credentials_in_a_value_the_schema_refuses_are_not_echoed(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nresources: {}\nimage: x\nimport:\n  /code: https://me:hunter2secret@github.com/o/r.git\n")
    code, _, err = validate(capsys, path)
    assert code == 2
    assert err.splitlines()[1] == (f"{path}:5:10: import[\"/code\"]: 'https://***@github.com/o/r.git' is not in the "
                                   "expected format")
    assert "hunter2secret" not in err


def test_null_where_a_string_is_needed_gets_no_quoting_hint(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: ~\nresources: {}\nimage: x\n")
    code, _, err = validate(capsys, path)
    assert code == 2
    assert err.splitlines()[1] == f"{path}:1:7: name: expected a string, got nothing (null)"
    assert 'quote it: name: "~"' not in err
