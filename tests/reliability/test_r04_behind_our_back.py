"""R4 — containers removed, killed or stopped behind the runner's back (10 runs each).

Pass criterion (reliability.md R4): the next `runner list` shows `failed ("container disappeared")`
for a removed container and the engine's exit code (137 / 143, "killed …") for a killed or stopped
one — 30/30 here; no record stays `running`; the oracle holds.

The table's fourth action, `docker network rm`, has no object to act on: runner creates no networks
(containers use the default bridge), which this test also checks. tests/integration/
test_engine_reconcile.py covers the same actions at 3 runs each, plus `describe`, `logs` and
`terminate` each reconciling a removed container.
"""

from __future__ import annotations

import concurrent.futures

from oracle import check_consistency
from runkit import RunKit, act_behind_the_runners_back
from support import assert_clean_output, batch, records

PER_ACTION = 10
EXPECTED = {
    "rm": ("failed", None, "container disappeared"),
    "kill": ("failed", 137, "killed (SIGKILL)"),
    "stop": ("failed", 143, "killed by signal 15 (SIGTERM)"),
}


def test_rm_kill_stop_behind_our_back(kit: RunKit, figures):
    manifest = kit.manifest(batch("r4", "sleep 600"), "r4.yaml")
    runs = {action: [] for action in EXPECTED}
    for action in EXPECTED:
        for n in range(PER_ACTION):
            created = kit.cli("create", "-f", manifest, "--name", f"r4-{action}-{n}", "--json")
            assert created.code == 0, created.text
            runs[action].append(created.json()["id"])
    assert check_consistency(kit) == []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # as a user's scripts would, all at once
        acts = [(action, run_id) for action in runs for run_id in runs[action]]
        codes = dict(zip(acts, pool.map(lambda act: act_behind_the_runners_back(kit.container(act[1]), act[0]), acts),
                         strict=True))
    for (action, _), code in codes.items():
        assert code == EXPECTED[action][1], (action, code)

    listed = kit.cli("list", "--all", "--json")
    assert listed.code == 0, listed.text
    assert_clean_output(listed.text)
    rows = {row["id"]: row for row in listed.json()}
    mismatches = []
    for action, ids in runs.items():
        status, code, reason = EXPECTED[action]
        for run_id in ids:
            row = rows[run_id]
            if (row["status"], row["exit_code"]) != (status, code) or not (row["reason"] or "").startswith(reason):
                mismatches.append((action, run_id, row["status"], row["exit_code"], row["reason"]))
    figures.add("R4", faults_injected=len(codes), faults_survived=len(codes) - len(mismatches))
    assert mismatches == []
    assert not [r for r in records(kit).values() if r.status in ("running", "idle", "stopping")]
    assert check_consistency(kit, grace_s=0) == []
    assert kit.client.networks.list(filters={"label": f"ai.runner.store={kit.store_id}"}) == []
    kit.assert_clean()
