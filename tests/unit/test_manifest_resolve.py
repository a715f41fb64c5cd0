"""Variables, placeholders and secrets through the whole pipeline (`load_manifest`).

Sources, highest first: `--env`, the env file (default `.env` beside the manifest), the process
environment; secret references then fall back to the local secret store. Shell commands are
never interpolated. Secret values live only in the `SecretBag`, and only when asked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runner.manifest import LoadedManifest, ManifestError, ManifestRequest, load_manifest
from runner.manifest.model import CommandStep, EnvVar, GitSource
from runner.manifest.resolve import TOKEN_PATTERNS, looks_secret

HEAD = "name: r\nresources: {}\nimage: python:3.11\n"
CANARY = "RNRCANARYq8Zt3LwV0pXk5MfJ2yHbN7c"


class FakeStore:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reads: list[str] = []

    def has(self, name: str) -> bool:
        return name in self.values

    def read(self, name: str) -> str | None:
        self.reads.append(name)
        return self.values.get(name)


def write(tmp_path: Path, body: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD + body)
    return path


def load(tmp_path: Path, body: str, **options: Any) -> LoadedManifest:
    options.setdefault("process_env", {})
    return load_manifest(ManifestRequest(str(write(tmp_path, body)), **options))


def failure(tmp_path: Path, body: str, **options: Any) -> ManifestError:
    options.setdefault("process_env", {})
    with pytest.raises(ManifestError) as info:
        load_manifest(ManifestRequest(str(write(tmp_path, body)), **options))
    return info.value


def env_of(loaded: LoadedManifest) -> dict[str, EnvVar]:
    return {var.name: var for var in loaded.manifest.env}


def lines(problems: Any, path: Path) -> list[str]:
    from runner.manifest.problems import format_problem

    return [format_problem(path.name, p).split("\n")[0] for p in problems]


# -- precedence -----------------------------------------------------------------------------------
BODY = "env:\n  A: ${V}\n  B: '{V}'\n"


def test_env_override_beats_env_file_and_process_env(tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("V=from-file\n")
    loaded = load(tmp_path, BODY, env_overrides={"V": "from-flag"}, env_file=str(env_file),
                  process_env={"V": "from-process"})
    assert env_of(loaded)["A"].value == "from-flag"
    assert loaded.secrets.names() == ()  # {V} is a secret reference; its value is not read here


def test_env_file_beats_process_env(tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("export V='from-file'  # comment\n")
    loaded = load(tmp_path, BODY, env_file=str(env_file), process_env={"V": "from-process"})
    assert env_of(loaded)["A"].value == "from-file"


def test_process_env_is_the_last_source(tmp_path: Path) -> None:
    assert env_of(load(tmp_path, BODY, process_env={"V": "from-process"}))["A"].value == "from-process"


def test_default_env_file_beside_the_manifest(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("V=beside\n")
    assert env_of(load(tmp_path, BODY, process_env={"V": "process"}))["A"].value == "beside"


def test_explicit_env_file_replaces_the_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("V=beside\nONLY_DEFAULT=1\n")
    other = tmp_path / "other.env"
    other.write_text("V=explicit\n")
    loaded = load(tmp_path, BODY + "  C: ${ONLY_DEFAULT:-unset}\n", env_file=str(other))
    assert env_of(loaded)["A"].value == "explicit"
    assert env_of(loaded)["C"].value == "unset"


def test_env_file_in_the_working_directory_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest_dir = tmp_path / "manifests"
    manifest_dir.mkdir()
    (tmp_path / ".env").write_text("V=cwd\n")
    monkeypatch.chdir(tmp_path)
    loaded = load(manifest_dir, BODY)
    assert env_of(loaded)["A"].value == "${V}"
    assert [w.message for w in loaded.warnings][:1] == ["variable V is not set"]


def test_missing_explicit_env_file_is_an_error(tmp_path: Path) -> None:
    error = failure(tmp_path, BODY, env_file=str(tmp_path / "nope.env"))
    assert str(error).endswith("nope.env: (root): cannot read env file: No such file or directory")


def test_env_file_errors_name_the_line_but_never_the_value(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text(f"GOOD=1\nnot a pair\nQ='{CANARY}\n")
    error = failure(tmp_path, BODY, env_file=str(env_file))
    assert error.report_lines() == [f"{env_file}:2:1: (root): expected KEY=VALUE",
                                    f"{env_file}:3:1: Q: unterminated single quote"]
    assert CANARY not in str(error)


def test_secret_reference_prefers_variables_over_the_store(tmp_path: Path) -> None:
    body = "env:\n  HF_TOKEN: {secret: HF}\n  OTHER: {secret: ONLY_STORED}\n"
    store = FakeStore({"HF": "from-store", "ONLY_STORED": "stored"})
    loaded = load(tmp_path, body, process_env={"HF": "from-process"}, secret_store=store, read_secret_values=True)
    assert dict(loaded.secrets.items()) == {"HF_TOKEN": "from-process", "OTHER": "stored"}
    assert store.reads == ["ONLY_STORED"]


# -- shell commands are the shell's business ------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("run: echo $MODEL_NAME ${X:-y} $$ ${UNSET}\n", "echo $MODEL_NAME ${X:-y} $$ ${UNSET}"),
        ("run:\n  - echo $MODEL_NAME $$\n", "echo $MODEL_NAME $$"),
        ("run:\n  - command: echo ${MODEL_NAME:?x} $$\n", "echo ${MODEL_NAME:?x} $$"),
        ("run:\n  - command: |\n      for f in $(ls); do echo \"$f\"; done\n",
         'for f in $(ls); do echo "$f"; done\n'),
    ],
)
def test_run_commands_are_never_interpolated(tmp_path: Path, body: str, expected: str) -> None:
    loaded = load(tmp_path, body, process_env={"MODEL_NAME": "gpt2", "X": "x"})
    (step,) = loaded.manifest.steps
    assert isinstance(step, CommandStep)
    assert step.command == expected
    assert loaded.warnings == ()


def test_run_workdir_is_interpolated(tmp_path: Path) -> None:
    loaded = load(tmp_path, "run:\n  - command: pwd\n    workdir: ${BASE}/app\n", process_env={"BASE": "/srv"})
    assert loaded.manifest.steps == (CommandStep("pwd", "/srv/app"),)


def test_build_setup_is_never_interpolated(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: r\nresources: {}\nimage:\n  url: python:${PY}\n  build:\n    setup:\n"
                    "      - pip install $PKG ${PKG:-x}\n")
    loaded = load_manifest(ManifestRequest(str(path), process_env={"PY": "3.11", "PKG": "torch"}))
    assert loaded.manifest.image.ref == "python:3.11"
    assert loaded.manifest.image.build is not None
    assert loaded.manifest.image.build.setup == ("pip install $PKG ${PKG:-x}",)


# -- values only, never structure -----------------------------------------------------------------
def test_a_value_that_looks_like_yaml_stays_one_string(tmp_path: Path) -> None:
    loaded = load(tmp_path, "description: ${D}\nenv:\n  A: '{P}'\n",
                  process_env={"D": "x\nimage: evil\nprivileged: true", "P": "{a: 1}"})
    assert loaded.manifest.description == "x\nimage: evil\nprivileged: true"
    assert loaded.manifest.image.ref == "python:3.11"


def test_keys_are_never_interpolated(tmp_path: Path) -> None:
    error = failure(tmp_path, "env:\n  ${NAME}: 1\n", process_env={"NAME": "OK_NAME"})
    assert lines(error.problems, Path("m.yaml")) == ["m.yaml:5:3: env: invalid name '${NAME}'"]


# -- placeholders ---------------------------------------------------------------------------------
def test_env_placeholders_in_every_spelling_become_secret_references(tmp_path: Path) -> None:
    body = "env:\n  A: {API_KEY}\n  B: '{API_KEY}'\n  C: <API_KEY>\n  D: {secret: API_KEY}\n"
    loaded = load(tmp_path, body, env_overrides={"API_KEY": CANARY}, read_secret_values=True)
    env = env_of(loaded)
    shapes = {name: (var.value, var.secret, var.secret_name) for name, var in env.items()}
    assert shapes == dict.fromkeys("ABCD", (None, True, "API_KEY"))
    assert dict(loaded.secrets.items()) == dict.fromkeys("ABCD", CANARY)
    assert CANARY not in repr(loaded.manifest) + json.dumps(loaded.resolved_data)


def test_free_text_angle_placeholder_is_reported_by_its_text(tmp_path: Path) -> None:
    path = write(tmp_path, "env:\n  WANDB: <your wandb key here>\n")
    loaded = load_manifest(ManifestRequest(str(path), process_env={}))
    assert [(w.message, w.hint) for w in loaded.warnings] == [(
        "<your wandb key here> looks like a placeholder to fill in",
        "write WANDB: {WANDB} and pass --env WANDB=VALUE, or store a secret")]


def test_placeholders_in_uri_strings_and_verbose_fields(tmp_path: Path) -> None:
    body = ("image: quay.io/{ORG}/torch:{TAG}\n"
            "import:\n  /code: git://github.com/{ORG}/examples\n"
            "  /lib:\n    git:\n      url: https://github.com/{ORG}/lib.git\n      ref: {REF}\n"
            "  /model: hf://huggingface.co/{ORG}/m\n")
    path = tmp_path / "m.yaml"
    path.write_text("name: r\nresources: {}\n" + body)
    loaded = load_manifest(ManifestRequest(str(path), process_env={"ORG": "acme", "TAG": "r5", "REF": "v1.2"}))
    manifest = loaded.manifest
    assert manifest.image.ref == "quay.io/acme/torch:r5"
    sources = {v.target: v.source for v in manifest.imports}
    assert isinstance(sources["/code"], GitSource) and sources["/code"].url.url == "https://github.com/acme/examples"
    assert isinstance(sources["/lib"], GitSource)
    assert (sources["/lib"].url.url, sources["/lib"].ref) == ("https://github.com/acme/lib.git", "v1.2")
    assert loaded.warnings == ()


def test_unfilled_placeholders_are_warnings_in_validate_mode(tmp_path: Path) -> None:
    body = "import:\n  /code:\n    git:\n      url: https://github.com/a/b.git\n      ref: {REF}\nenv:\n  K: {KEY}\n"
    path = write(tmp_path, body)
    loaded = load_manifest(ManifestRequest(str(path), process_env={}))
    assert lines(loaded.warnings, path) == [
        "m.yaml:8:12: import[\"/code\"].git.ref: warning: placeholder {REF} has no value",
        "m.yaml:10:6: env.K: warning: placeholder {KEY} has no value",
    ]


def test_unfilled_placeholders_are_all_errors_in_strict_mode(tmp_path: Path) -> None:
    body = ("image: python:{PY}\nenv:\n  A: ${UNSET_ONE}\n  B: {secret: UNSET_TWO}\n  C: '{UNSET_THREE}'\n"
            "  D: ${UNSET_FOUR:?give D a value}\n")
    path = tmp_path / "m.yaml"
    path.write_text("name: r\nresources: {}\n" + body)
    with pytest.raises(ManifestError) as info:
        load_manifest(ManifestRequest(str(path), process_env={}, strict=True))
    assert lines(info.value.problems, path) == [
        "m.yaml:3:8: image: placeholder {PY} has no value",
        "m.yaml:5:6: env.A: variable UNSET_ONE is not set",
        "m.yaml:6:15: env.B.secret: secret UNSET_TWO was not found",
        "m.yaml:7:6: env.C: placeholder {UNSET_THREE} has no value",
        "m.yaml:8:6: env.D: variable UNSET_FOUR is required: give D a value",
    ]
    assert info.value.exit_code == 2


def test_stored_secret_satisfies_a_reference_without_reading_it(tmp_path: Path) -> None:
    store = FakeStore({"HF": CANARY})
    loaded = load(tmp_path, "env:\n  HF_TOKEN: {secret: HF}\n", secret_store=store, strict=True)
    assert loaded.warnings == ()
    assert store.reads == []
    assert len(loaded.secrets) == 0


def test_interpolation_syntax_errors_are_errors_even_when_validating(tmp_path: Path) -> None:
    error = failure(tmp_path, "description: 'cost ${'\n")
    assert error.report_lines() == [
        f"{tmp_path / 'm.yaml'}:4:14: description: invalid interpolation: invalid variable name after `${{` at "
        "offset 5\n    hint: write a literal $ as $$; variables are ${NAME} or ${NAME:-default}"
    ]


# -- secrets by shape and by name -----------------------------------------------------------------
def test_value_with_secret_true_is_masked_and_only_in_the_bag(tmp_path: Path) -> None:
    body = f"env:\n  WANDB:\n    value: {CANARY}\n    secret: true\n  SHOWN:\n    value: '1'\n    secret: false\n"
    without = load(tmp_path, body)
    assert env_of(without)["WANDB"] == EnvVar("WANDB", None, secret=True)
    assert env_of(without)["SHOWN"] == EnvVar("SHOWN", "1")
    assert len(without.secrets) == 0
    with_values = load(tmp_path, body, read_secret_values=True)
    assert dict(with_values.secrets.items()) == {"WANDB": CANARY}
    for loaded in (without, with_values):
        assert CANARY not in repr(loaded.manifest) + json.dumps(loaded.resolved_data) + repr(loaded.secrets)


@pytest.mark.parametrize("body", ["W: {value: {WANDB}, secret: true}", "W: {value: {WANDB}}",
                                  "W: {text: {WANDB}, source: text}"])
def test_placeholder_inside_an_env_map_is_filled_like_a_bare_one(tmp_path: Path, body: str) -> None:
    loaded = load(tmp_path, f"env:\n  {body}\n", env_overrides={"WANDB": CANARY}, read_secret_values=True)
    assert env_of(loaded)["W"] == EnvVar("W", None, secret=True, secret_name="WANDB")
    assert dict(loaded.secrets.items()) == {"W": CANARY}
    assert "{'WANDB': None}" not in repr(loaded.manifest) + json.dumps(loaded.resolved_data)


def test_unfilled_placeholder_inside_an_env_map_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "env:\n  W: {value: {WANDB}, secret: true}\n  D: {value: {DBG}}\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(ManifestRequest(str(path), process_env={}, strict=True, read_secret_values=True))
    assert lines(info.value.problems, path) == ["m.yaml:5:14: env.W.value: placeholder {WANDB} has no value",
                                                "m.yaml:6:14: env.D.value: placeholder {DBG} has no value"]


@pytest.mark.parametrize("name", ["HF_TOKEN", "GITHUB_TOKEN", "OPENAI_API_KEY", "APIKEY", "PASSWORD", "DB_PASSWORD",
                                  "MY_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY", "GCP_CREDENTIALS",
                                  "PRIVATE_KEY", "token"])
def test_secret_looking_names_keep_their_plain_value_secret(tmp_path: Path, name: str) -> None:
    assert looks_secret(name)
    loaded = load(tmp_path, f"env:\n  {name}: {CANARY}\n", read_secret_values=True)
    assert env_of(loaded)[name] == EnvVar(name, None, secret=True)
    assert dict(loaded.secrets.items()) == {name: CANARY}
    assert CANARY not in repr(loaded.manifest) + json.dumps(loaded.resolved_data)


@pytest.mark.parametrize("name", ["TOKENIZERS_PARALLELISM", "MAX_TOKENS", "MONKEY", "KEYBOARD", "SECRETARY_NAME",
                                  "PASSWORDLESS"])
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not looks_secret(name)


TOKENS = {
    "a Hugging Face token": "hf_" + "a1B2c3D4e5" * 4,
    "an OpenAI-style API key": "sk-proj-" + "Ab3dEf6hIj" * 3,
    "a GitHub token": "ghp_" + "Z9y8X7w6V5" * 4,
    "a GitLab token": "glpat-" + "q1W2e3R4t5" * 2 + "xy",
    "an AWS access key id": "AKIA" + "ABCDEFGH23456789",
    "a Slack token": "xoxb-" + "1234567890-abcdef",
    "a Google API key": "AIza" + "Sy" + "B1c2D3e4F5" * 3 + "abc",
    "a JSON web token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36P",
    "a private key": "-----BEGIN RSA PRIVATE KEY-----",
}


def test_token_table_covers_every_pattern() -> None:
    assert sorted(TOKENS) == sorted(kind for kind, _ in TOKEN_PATTERNS)


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_inline_tokens_are_a_policy_refusal_that_never_echoes_them(tmp_path: Path, kind: str) -> None:
    token = TOKENS[kind]
    error = failure(tmp_path, f"env:\n  MODEL_CONFIG: '{token}'\n")
    assert error.exit_code == 4
    assert lines(error.problems, Path("m.yaml")) == [f"m.yaml:5:17: env.MODEL_CONFIG: {kind} is written inline "
                                                     "in the manifest"]
    assert "runner secret set MODEL_CONFIG" in str(error)
    assert token not in str(error)


def test_inline_token_under_a_secret_name_is_still_refused(tmp_path: Path) -> None:
    error = failure(tmp_path, f"env:\n  HF_TOKEN: {TOKENS['a Hugging Face token']}\n")
    assert error.exit_code == 4
    assert TOKENS["a Hugging Face token"] not in str(error)


def test_token_arriving_through_a_variable_into_a_plain_name_is_refused(tmp_path: Path) -> None:
    token = TOKENS["a GitHub token"]
    error = failure(tmp_path, "env:\n  REPO_AUTH: ${GH}\n", process_env={"GH": token})
    assert lines(error.problems, Path("m.yaml")) == [
        "m.yaml:5:14: env.REPO_AUTH: a GitHub token would be passed as a plain environment variable"]
    assert error.exit_code == 4
    assert token not in str(error)


def test_token_arriving_through_a_variable_into_a_secret_name_is_kept_secret(tmp_path: Path) -> None:
    loaded = load(tmp_path, "env:\n  GH_TOKEN: ${GH}\n", process_env={"GH": TOKENS["a GitHub token"]},
                  read_secret_values=True)
    assert dict(loaded.secrets.items()) == {"GH_TOKEN": TOKENS["a GitHub token"]}


# -- other env forms ------------------------------------------------------------------------------
def test_secret_id_and_inject_are_reported_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "env:\n  DB_PASSWORD: {secret_id: 1234, source: secret}\n  STEP: {source: inject}\n")
    loaded = load_manifest(ManifestRequest(str(path), process_env={}))
    assert lines(loaded.warnings, path) == [
        "m.yaml:5:28: env.DB_PASSWORD.secret_id: warning: secret_id refers to a VESSL secret by number, which "
        "runner cannot see",
        "m.yaml:6:9: env.STEP: warning: STEP is injected (source: inject) but no value was given",
    ]
    injected = load(tmp_path, "env:\n  STEP: {source: inject}\n", env_overrides={"STEP": "7"})
    assert env_of(injected)["STEP"] == EnvVar("STEP", "7")


def test_scalar_env_values_keep_the_text_the_user_wrote(tmp_path: Path) -> None:
    body = ("env:\n  epochs: 5\n  lr: 0.0010\n  use_fp16: true\n  octal: 0777\n  EMPTY:\n"
            "  text: {text: hi, source: text}\n")
    env = env_of(load(tmp_path, body))
    assert {name: var.value for name, var in env.items()} == {
        "epochs": "5", "lr": "0.0010", "use_fp16": "true", "octal": "0777", "EMPTY": "", "text": "hi"}


def test_legacy_env_list_form(tmp_path: Path) -> None:
    body = f"env:\n  - key: MODEL\n    value: gpt2\n  - key: HF_TOKEN\n    value: {CANARY}\n"
    loaded = load(tmp_path, body, read_secret_values=True)
    assert env_of(loaded) == {"MODEL": EnvVar("MODEL", "gpt2"), "HF_TOKEN": EnvVar("HF_TOKEN", None, secret=True)}
    assert dict(loaded.secrets.items()) == {"HF_TOKEN": CANARY}


def test_legacy_env_list_form_equals_the_mapping_form(tmp_path: Path) -> None:
    listed = load(tmp_path, "env:\n  - key: lr\n    value: 0.0010\n  - key: API_KEY\n    value: {API_KEY}\n"
                  "  - key: EMPTY\n", env_overrides={"API_KEY": CANARY}, read_secret_values=True)
    mapped = load(tmp_path, "env:\n  lr: 0.0010\n  API_KEY: {API_KEY}\n  EMPTY:\n",
                  env_overrides={"API_KEY": CANARY}, read_secret_values=True)
    assert listed.manifest == mapped.manifest
    assert env_of(listed)["lr"] == EnvVar("lr", "0.0010")
    assert dict(listed.secrets.items()) == dict(mapped.secrets.items()) == {"API_KEY": CANARY}


def test_legacy_env_list_problems_point_at_the_item(tmp_path: Path) -> None:
    path = write(tmp_path, "env:\n  - key: OK\n    value: 1\n  - key: BAD-NAME\n    value: x\n"
                           "  - key: TOKEN_X\n    value: {MISSING}\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(ManifestRequest(str(path), process_env={}, strict=True))
    assert lines(info.value.problems, path) == ["m.yaml:7:10: env: invalid name 'BAD-NAME'",
                                                "m.yaml:10:12: env.TOKEN_X: placeholder {MISSING} has no value"]


def test_secret_values_never_reach_a_warning_or_error(tmp_path: Path) -> None:
    body = (f"env:\n  HF_TOKEN: {CANARY}\n  W: {{value: {CANARY}, secret: true}}\n  S: {{secret: S}}\n"
            "  MISSING: {secret: NOPE}\n  BAD-NAME: x\nports: [70000]\n")
    error = failure(tmp_path, body, env_overrides={"S": CANARY}, read_secret_values=True, strict=True)
    assert len(error.problems) == 3
    assert CANARY not in str(error) + json.dumps([p.to_json("m") for p in error.problems])


def test_process_environment_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_TEST_VALUE", "from-os")
    path = write(tmp_path, "env:\n  A: ${RUNNER_TEST_VALUE}\n")
    assert env_of(load_manifest(ManifestRequest(str(path))))["A"].value == "from-os"
    assert os.environ["RUNNER_TEST_VALUE"] == "from-os"
