"""R7 — exit status fidelity: 0, 1, 2, 42, 126, 127, 255 and SIGSEGV, exactly as the engine reports them.

Pass criterion (reliability.md R7): for 8/8 the run's recorded exit code equals `docker inspect`'s
`State.ExitCode` (139 for SIGSEGV) and the reason says what happened.

`create --wait` (runner's documented semantics, README/`runner --help`: 0 ok · 1 run failed): it waits
for readiness, not for the run to end, so its own exit status is 1 for a run that failed before it was
ready (whatever the container's code), 0 for one that completed — never the container's code. The
table's "`run --wait` exit code = container code" describes a different command shape (a blocking
`run`); runner has none, and the container's code is in `list`/`describe` instead.
"""

from __future__ import annotations

import pytest
from oracle import check_consistency
from runkit import RunKit
from support import assert_clean_output, batch, records, run

CASES = {
    "0": ("echo fine", 0, "completed", "exit code 0"),
    "1": ("false", 1, "failed", "exit code 1 (step 1/1)"),
    "2": ("exit 2", 2, "failed", "exit code 2 (step 1/1)"),
    "42": ("exit 42", 42, "failed", "exit code 42 (step 1/1)"),
    "126": ("printf 'echo hi\\n' > /tmp/not-executable\n/tmp/not-executable", 126, "failed",
            "exit code 126 (step 1/1)"),
    "127": ("no-such-program --flag", 127, "failed", "exit code 127 (step 1/1)"),
    "255": ("exit 255", 255, "failed", "exit code 255 (step 1/1)"),
    "SIGSEGV": ("sh -c 'kill -SEGV $$'", 139, "failed", "killed by signal 11 (SIGSEGV) (step 1/1)"),
}


def test_exit_codes_match_the_engine_exactly(kit: RunKit, figures):
    runs = {case: kit.create(batch(f"r7-{case.lower()}", command))["id"] for case, (command, *_) in CASES.items()}
    engine = {case: kit.wait_exit(run_id) for case, run_id in runs.items()}
    inspected = {case: kit.inspect(run_id)["State"] for case, run_id in runs.items()}
    listed = kit.listing()
    matched = 0
    for case, run_id in runs.items():
        _, code, status, reason = CASES[case]
        assert engine[case] == inspected[case]["ExitCode"] == code, (case, engine[case], inspected[case])
        assert inspected[case]["OOMKilled"] is False
        row = listed[run_id]
        assert (row["status"], row["exit_code"], row["reason"]) == (status, code, reason), (case, row)
        matched += 1
    figures.add("R7", exit_codes=len(CASES), matched=matched)
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()


@pytest.mark.parametrize(("case", "cli_code"), [("0", 0), ("42", 1), ("SIGSEGV", 1), ("127", 1)])
def test_create_wait_exit_status_is_documented_not_the_containers(kit: RunKit, case: str, cli_code: int, figures):
    command, code, status, reason = CASES[case]
    manifest = kit.manifest(batch(f"r7-wait-{case.lower()}", f"sleep 1\n{command}", extra=(
        "ports:\n          - {name: web, type: http, port: 8080, host_port: 0}")))
    result = run(kit, "create", "-f", manifest, "--wait", "--json")
    assert_clean_output(result)
    assert result.code == cli_code, result.text
    (record,) = records(kit).values()
    assert (record.status, record.exit_code, record.reason) == (status, code, reason)
    figures.add("R7", create_wait_cases=1)
    kit.assert_clean()
