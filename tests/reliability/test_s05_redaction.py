"""S5 — validation errors on secret-bearing fields: the JSON path, never the value, for every error kind.

Pass criterion (reliability.md S5): for each schema error kind on a field that carries a secret, the
error names the field's path (`env.A_TOKEN…`) and the value appears nowhere in the output (text or
JSON) — in `validate`, `validate --json` and `create --dry-run`. Existing proofs:
tests/unit/test_hostile_inputs.py (`secret-value-in-bad-field`, `inline-*`: exit 2/4, no canary),
tests/unit/test_manifest_errors.py (`test_env_values_are_never_quoted_back`,
`test_credentials_in_a_value_the_schema_refuses_are_not_echoed`). This file walks the error kinds of
the secret reference forms (`{value, secret: true}`, `{secret: NAME}`, `{text}`, `source`, `secret_id`)
and of secret-named plain values.

The schema checks env as written (ResolvedManifest.env_as_written), so a malformed reference map is
reported even though resolution replaces secret values with name-only forms before validation.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass

import pytest
from runkit import RUNNER_BIN
from support import Proc, assert_clean_output

CANARY = "RNRCANARY" + secrets.token_hex(12)
HEAD = "name: s5\nresources: {preset: cpu-small}\nimage: runner-test/busybox:1\nrun: echo hi\nenv:\n"


@dataclass(frozen=True)
class Case:
    env: str  # the env entry; CANARY is substituted
    path: str  # the JSON path the error must name


CASES = {
    "unknown-key": Case("  A_TOKEN: {value: CANARY, secret: true, oops: CANARY}", "env.A_TOKEN.oops"),
    "text-with-value-and-secret-true": Case("  A_TOKEN: {value: CANARY, secret: true, text: CANARY}",
                                            "env.A_TOKEN.text"),
    "secret-named-plain-list": Case("  A_TOKEN: [CANARY]", "env.A_TOKEN"),
    "secret-named-plain-mapping": Case("  API_PASSWORD: {nested: CANARY}", "env.API_PASSWORD"),
    "inline-secret-bad-neighbour": Case("  A_TOKEN: {value: CANARY, secret: true}\n  B: [1, 2]", "env.B"),
    "value-is-a-list": Case("  A_TOKEN: {value: [CANARY], secret: true}", "env.A_TOKEN.value"),
    "value-is-a-mapping": Case("  A_TOKEN: {value: {k: CANARY}, secret: true}", "env.A_TOKEN.value"),
    "secret-flag-not-bool-or-name": Case("  A_TOKEN: {value: CANARY, secret: 5}", "env.A_TOKEN.secret"),
    "empty-secret-name": Case("  A_TOKEN: {value: CANARY, secret: ''}", "env.A_TOKEN.secret"),
    "unknown-source": Case("  A_TOKEN: {value: CANARY, source: CANARY}", "env.A_TOKEN.source"),
    "text-with-secret-true": Case("  A_TOKEN: {text: CANARY, secret: true}", "env.A_TOKEN.text"),
    "value-beside-secret-name": Case("  A_TOKEN: {secret: A_TOKEN, value: CANARY}", "env.A_TOKEN.value"),
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Proc]]:
    """`validate`, `validate --json` and `create --dry-run` of every case, run once for both tests."""
    root = tmp_path_factory.mktemp("s05")
    env = {**os.environ, "RUNNER_HOME": str(root / "home")}
    found: dict[str, list[Proc]] = {}
    for name, case in CASES.items():
        manifest = root / f"{name}.yaml"
        manifest.write_text(HEAD + case.env.replace("CANARY", CANARY) + "\n")
        found[name] = []
        for args in (("validate", "-f", str(manifest)), ("validate", "-f", str(manifest), "--json"),
                     ("create", "--dry-run", "-f", str(manifest))):
            done = subprocess.run([str(RUNNER_BIN), *args], capture_output=True, text=True, env=env, timeout=60,
                                  check=False)
            found[name].append(Proc(done.returncode, done.stdout, done.stderr, 0.0))
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_value_never_appears(outputs: dict[str, list[Proc]], name: str, figures):
    """Holds for every case, including those the validator wrongly accepts."""
    figures.add("S5", hostile_inputs=1, leaks_found=sum(CANARY in o.text for o in outputs[name]))
    for output in outputs[name]:
        assert_clean_output(output)
        assert CANARY not in output.text, f"the value leaked: {output.text}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_error_is_reported_at_the_path(outputs: dict[str, list[Proc]], name: str):
    assert [o.code for o in outputs[name]] == [2, 2, 2], [o.text for o in outputs[name]]
    assert all(CASES[name].path in o.text for o in outputs[name]), [o.text for o in outputs[name]]
