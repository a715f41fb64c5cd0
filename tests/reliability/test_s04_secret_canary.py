"""S4 — a secret canary through every secret path and the whole lifecycle: zero leaks.

One random canary per way a secret reaches a run:
  A `runner secret set` (stdin) referenced as `{secret: CANARY_A}`
  B a `{CANARY_B}` placeholder filled by `--env`
  C an inline `{value: …, secret: true}`
  D a plain value under a secret-looking name (`X_TOKEN: …`)
  E `{secret: CANARY_E}` filled from the `.env` file beside the manifest
  F `{secret: CANARY_F}` filled from the process environment
The step prints every value raw, base64 and URL-encoded (so masking is exercised), and serves HTTP.
Lifecycle: `create --dry-run`, `create --wait`, `list`, `describe` (text and JSON), `logs`, `logs --tail`,
`logs -f` (until the run ends), `terminate`, `logs`/`describe` after the end, an engine error (image
404) and a validation error on a secret-bearing field, both with the same secrets.

Pass criterion (reliability.md S4): no form of any canary — raw, base64 and URL-safe base64 at every
byte alignment, URL-encoded — in any captured stdout/stderr, any file under RUNNER_HOME except
secrets/ (the SQLite database and its WAL included), or `docker inspect` of the running container
(Config.Env/Cmd/Entrypoint/Labels, HostConfig: the whole document). Inside the container the values
exist only as files under /run/secrets/ (compared by digest, never printed) and in the steps'
environment (compared by digest). The search is shown to work: it finds each canary in the engine's raw
log (the step printed it) and in the secret store.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
import time
from pathlib import Path

from oracle import check_consistency
from runkit import RunKit
from support import BUSYBOX, Proc, assert_clean_output, finish, forms, home_files, run, spawn

NAMES = {"A": "CANARY_A", "B": "CANARY_B", "C": "CANARY_C", "D": "X_TOKEN", "E": "CANARY_E", "F": "CANARY_F"}


def _canary() -> str:
    return f"RNRCANARY{secrets.token_hex(10)}+/{secrets.token_hex(3)}="  # + / = make every encoding differ


def _manifest(canaries: dict[str, str], image: str = BUSYBOX, extra: str = "") -> str:
    names = " ".join(NAMES.values())
    return f"""
        name: s4-canary
        resources: {{preset: cpu-small}}
        image: {image}
        env:
          PLAIN_GREETING: hello-plain
          CANARY_A: {{secret: CANARY_A}}
          CANARY_B: "{{CANARY_B}}"
          CANARY_C: {{value: {canaries["C"]}, secret: true}}
          X_TOKEN: {canaries["D"]}
          CANARY_E: {{secret: CANARY_E}}
          CANARY_F: {{secret: CANARY_F}}
          {extra}
        run:
          - command: |
              for name in {names}; do
                eval "value=\\$$name"
                printf '%s raw=%s\\n' "$name" "$value"
                printf '%s b64=%s\\n' "$name" "$(printf %s "$value" | base64 -w0)"
                printf '%s url=%s\\n' "$name" "$(printf %s "$value" | sed 's/+/%2B/g; s#/#%2F#g; s/=/%3D/g')"
                printf %s "$value" | sha256sum | cut -c1-64 > /tmp/$name.sha
              done
              echo "plain=$PLAIN_GREETING"
              mkdir -p /www && echo ok > /www/index.html
              exec httpd -f -p 8080 -h /www
        ports:
          - {{name: web, type: http, port: 8080, host_port: 0}}
    """


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _container_files(container, paths: tuple[str, ...]) -> dict[str, bytes]:
    """Regular files under `paths` of the container, read through the engine's archive API."""
    files: dict[str, bytes] = {}
    for path in paths:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    files[f"{path.rstrip('/')}/{member.name.split('/', 1)[-1]}"] = handle.read()
    return files


def test_secret_canary_across_the_lifecycle(kit: RunKit, figures):
    canaries = {key: _canary() for key in NAMES}
    manifest = kit.manifest(_manifest(canaries), "s4.yaml")
    Path(manifest).with_name(".env").write_text(f"CANARY_E={canaries['E']}\n")
    env = {"CANARY_F": canaries["F"]}
    env_flag = ("--env", f"CANARY_B={canaries['B']}")
    outputs: list[Proc] = []

    def cli(*args: str, stdin: str | None = None) -> Proc:
        result = kit.cli(*args, env=env, stdin=stdin)
        outputs.append(Proc(result.code, result.out, result.err, 0.0))
        return outputs[-1]

    assert cli("secret", "set", "CANARY_A", stdin=canaries["A"] + "\n").code == 0
    dry = cli("create", "-f", manifest, *env_flag, "--dry-run")
    assert dry.code == 0 and "CANARY_A=***" in dry.out, dry.text
    created = run(kit, "create", "-f", manifest, *env_flag, "--wait", "--json", env=env)
    outputs.append(created)
    assert created.code == 0, created.text
    run_id = json.loads(created.out)["id"]
    container = kit.container(run_id)

    # -- while running: the engine's view, the container's own view --------------------------------------
    inspected = json.dumps(kit.inspect(run_id))
    assert "PLAIN_GREETING=hello-plain" in inspected  # the search below would find a value that is there
    engine_log = b"".join(kit.client.api.logs(container.id, stream=False) for _ in [0])
    inside = _container_files(container, ("/run", "/tmp", "/etc", "/root", "/www"))
    for key, name in NAMES.items():
        value = canaries[key]
        assert value.encode() in engine_log, f"the step did not print {name}: the masking below tests nothing"
        assert inside.get(f"/run/secrets/{name}") == value.encode(), f"/run/secrets/{name} differs"
        assert inside[f"/tmp/{name}.sha"].decode().strip() == _sha(value), f"{name} did not reach the step's env"
        holders = sorted(path for path, data in inside.items() if value.encode() in data)
        assert holders == [f"/run/secrets/{name}"], f"{name} found in {holders}"
    exec_env = container.exec_run(["sh", "-c", "env"])[1].decode()
    assert "PLAIN_GREETING=hello-plain" in exec_env
    assert not any(value in exec_env for value in canaries.values()), "secrets in the container's configured env"

    # -- every reading command, live -----------------------------------------------------------------------
    for args in (("list",), ("list", "--json"), ("describe", run_id), ("describe", run_id, "--json"),
                 ("logs", run_id), ("logs", run_id, "--tail", "5")):
        assert cli(*args).code == 0, args
    logs = outputs[-2].out
    assert "CANARY_A raw=***" in logs and "CANARY_A b64=***" in logs and "CANARY_A url=***" in logs, logs
    described = json.loads(outputs[-3].out)
    assert all(described["env"][name] == "***" for name in NAMES.values()), described["env"]

    # -- logs -f until the run ends, while terminate ends it ------------------------------------------------
    follower = spawn(kit, "logs", run_id, "-f", env=env)
    started = time.monotonic()
    outputs.append(run(kit, "terminate", run_id, env=env))
    assert outputs[-1].code == 0, outputs[-1].text
    followed = finish(follower, started, timeout=60)
    outputs.append(followed)
    assert followed.code == 0 and "X_TOKEN raw=***" in followed.out, followed.text
    for args in (("logs", run_id), ("describe", run_id, "--json"), ("list", "--all", "--json")):
        assert cli(*args).code == 0, args
    assert "CANARY_F url=***" in outputs[-3].out

    # -- errors that involve the same secrets ----------------------------------------------------------------
    engine_error = kit.manifest(_manifest(canaries, image="runner-test/no-such-image:s4"), "s4-404.yaml")
    Path(engine_error).with_name(".env").write_text(f"CANARY_E={canaries['E']}\n")
    outputs.append(run(kit, "create", "-f", engine_error, *env_flag, "--name", "s4-engine-error", env=env))
    assert outputs[-1].code == 1 and "could not pull" in outputs[-1].err, outputs[-1].text
    invalid = kit.manifest(_manifest(canaries, extra=f"CANARY_G: {{value: {canaries['C']}, secret: true, "
                                                     "oops: 1}"), "s4-invalid.yaml")
    for command in (("validate", "-f", invalid), ("validate", "-f", invalid, "--json"),
                    ("create", "-f", invalid, *env_flag)):
        outputs.append(run(kit, *command, env=env))
        assert outputs[-1].code == 2, outputs[-1].text
        assert "CANARY_G" in outputs[-1].text, outputs[-1].text

    # -- the search ----------------------------------------------------------------------------------------------
    assert_clean_output(*outputs)
    files = {str(p.relative_to(kit.home)): p.read_bytes() for p in home_files(kit.home)}
    assert any(name.startswith("runs/") for name in files) and "runner.db" in files
    leaks = []
    tried = 0
    for key, value in canaries.items():
        for form in forms(value):
            tried += 1
            leaks += [f"{NAMES[key]} ({form}) in output {i}" for i, o in enumerate(outputs) if form in o.text]
            leaks += [f"{NAMES[key]} ({form}) in {name}" for name, data in files.items() if form.encode() in data]
            if form in inspected:
                leaks.append(f"{NAMES[key]} ({form}) in docker inspect")
    figures.add("S4", canaries=len(canaries), forms_searched=tried, outputs=len(outputs), files=len(files),
                leaks_found=len(leaks))
    assert leaks == []
    assert kit.files_containing(canaries["A"].encode(), skip=()) == ["secrets/CANARY_A"]  # the search works
    assert (kit.home / "secrets" / "CANARY_A").stat().st_mode & 0o777 == 0o600
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()
