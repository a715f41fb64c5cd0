"""R8 — out of memory: the run's own process vs a child, under `resources: {memory: 64Mi}`.

Pass criterion (reliability.md R8), 10 runs each:
- the step's shell itself grows past the limit and is OOM-killed → `failed`, "OOM killed (out of
  memory)", exit 137, with the engine saying `OOMKilled: true`;
- a child is OOM-killed and the step carries on to exit 0 → `completed`, exit 0, plus the warning
  "a process in the run was killed for lack of memory (OOM)" — the engine also says OOMKilled=true
  here, which is why runner requires exit 137 *and* OOMKilled for "OOM killed".

This engine runs cgroup v1 (Docker 20.10); there `OOMKilled` is set when any process of the
container's cgroup was OOM-killed — but from an asynchronous OOM event, so a container that exits
right after its child was killed is sometimes reported OOMKilled=false (seen in CI: 1 of 10). runner
can only report what the engine says, so for the child case the test asserts the child really was
OOM-killed (its exit status 137 in the log), `completed`/exit 0 always, and the warning exactly when
the engine flagged the OOM; how often the engine flagged it is a figure. A bare 137 without OOMKilled
is "killed (SIGKILL)": R4/R7.
"""

from __future__ import annotations

from oracle import check_consistency
from runkit import RunKit
from support import batch

RUNS_EACH = 10
LIMIT = "{cpu: 1, memory: 64Mi}"
MAIN = "echo allocating\nhog=$(head -c 300000000 /dev/zero | tr '\\0' a)\necho not-reached"
CHILD = ("sh -c 'hog=$(head -c 300000000 /dev/zero | tr \"\\0\" a); echo not-reached'\n"
         "echo \"child ended with $?\"\nexit 0")
WARNING = "a process in the run was killed for lack of memory (OOM); the run still exited 0"


def test_main_process_vs_child_oom(kit: RunKit, figures):
    runs = {(case, n): kit.create(batch(f"r8-{case}-{n}", command, resources=LIMIT))["id"]
            for n in range(RUNS_EACH) for case, command in (("main", MAIN), ("child", CHILD))}
    assert all(kit.inspect(run_id)["HostConfig"]["Memory"] == 64 << 20 for run_id in runs.values())
    engine = {key: (kit.wait_exit(run_id, timeout=120), kit.inspect(run_id)["State"]["OOMKilled"])
              for key, run_id in runs.items()}
    child_logs = {key: kit.cli("logs", run_id).out for key, run_id in runs.items() if key[0] == "child"}
    listed = kit.listing()
    ok = {"main": 0, "child": 0}
    child_flagged = 0
    for (case, n), run_id in runs.items():
        row = listed[run_id]
        described = kit.describe(run_id)
        if case == "main":
            assert engine[(case, n)] == (137, True), engine[(case, n)]
            assert (row["status"], row["exit_code"], row["reason"]) == ("failed", 137, "OOM killed (out of memory)")
        else:
            code, flagged = engine[(case, n)]
            assert code == 0 and "child ended with 137" in child_logs[(case, n)], (engine[(case, n)], child_logs)
            assert (row["status"], row["exit_code"], row["reason"]) == ("completed", 0, "exit code 0")
            assert described.get("warning") == (WARNING if flagged else None), (flagged, described)
            child_flagged += flagged
        ok[case] += 1
    assert child_flagged > 0, "the engine flagged no child OOM at all: cgroup behaviour changed?"
    figures.add("R8", main_oom=ok["main"], child_oom=ok["child"], child_oom_flagged_by_engine=child_flagged,
                runs=len(runs))
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()
