"""`runner create` on the real engine: the container it makes, secrets, ports, images and GPUs.

Everything is driven through the real CLI (`kit.cli`, in-process) and checked against `docker inspect`;
the `kit` fixture fails a test that leaves anything of its store in the engine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.request

import pytest
from runkit import RunKit, free_port, listener

BUSYBOX = "runner-test/busybox:1"
GiB = 1 << 30
MiB = 1 << 20


def _httpd(port: int, *, host_port: str = "") -> str:
    return f"""
        name: web
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        env:
          GREETING: hello-plain
        run:
          - command: |
              mkdir -p /www && echo "page from $GREETING" > /www/index.html
              exec httpd -f -p {port} -h /www
        ports:
          - {{name: web, type: http, port: {port}{host_port}}}
    """


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_container_shape_http_endpoint_and_create_json(kit: RunKit):
    port = free_port()
    result = kit.cli("create", "-f", kit.manifest(_httpd(port)), "--wait", "--json")
    assert result.code == 0, result.text
    created = result.json()
    assert set(created) >= {"id", "name", "status", "endpoints"}
    assert created["name"] == "web" and created["status"] == "running"
    url = created["endpoints"]["web"]
    assert url == f"http://127.0.0.1:{port}", "a free container port is published on the same host port"
    assert _get(url) == "page from hello-plain\n"

    run_id = created["id"]
    data = kit.inspect(run_id)
    config, host = data["Config"], data["HostConfig"]
    assert data["Name"] == f"/runner-{run_id}"
    labels = config["Labels"]
    assert labels["ai.runner.store"] == kit.store_id
    assert labels["ai.runner.run-id"] == run_id
    assert labels["ai.runner.managed"] == "true"
    assert len(labels["ai.runner.spec-hash"]) == 64
    assert config["Entrypoint"] == ["/bin/sh", "/run/runner/entrypoint.sh"]
    assert "GREETING=hello-plain" in config["Env"]
    assert host["Init"] is True
    assert host["PortBindings"] == {f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert host["NanoCpus"] == 2_000_000_000 and host["Memory"] == 4 * GiB  # preset cpu-small
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "25m", "max-file": "2"}}
    assert host["AutoRemove"] is False
    assert host["RestartPolicy"]["Name"] == "no"
    assert data["State"]["Running"] is True

    done = kit.cli("terminate", run_id)
    assert done.code == 0, done.text
    assert kit.describe(run_id)["status"] == "terminated"
    kit.assert_clean()


def test_requests_set_cpu_and_memory_limits(kit: RunKit):
    created = kit.create(f"""
        name: limits
        resources:
          requests: {{cpu: 500m, memory: 256Mi}}
        image: {BUSYBOX}
        run:
          - command: sleep 600
    """)
    host = kit.inspect(created["id"])["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 256 * MiB
    assert kit.describe(created["id"])["resources"]["cpus"] == 0.5
    assert kit.cli("terminate", created["id"], "--grace", "1").code == 0
    kit.assert_clean()


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_secret_canary_reaches_the_process_and_nothing_else(kit: RunKit, wait_for):
    canary = {name: f"RNRCANARY{secrets.token_hex(12)}" for name in ("A", "B", "C")}
    assert kit.cli("secret", "set", "CANARY_A", stdin=canary["A"] + "\n").code == 0
    manifest = kit.manifest(f"""
        name: canary
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        termination_protection: true
        env:
          PLAIN_GREETING: hello-plain
          CANARY_A: {{secret: CANARY_A}}
          CANARY_B: "{{CANARY_B}}"
          CANARY_C: {{value: {canary["C"]}, secret: true}}
        run:
          - command: |
              for name in CANARY_A CANARY_B CANARY_C; do
                eval "value=\\$$name"; printf %s "$value" | sha256sum | cut -c1-64 > /tmp/$name.sha
              done
              echo "A=$CANARY_A B=$CANARY_B C=$CANARY_C plain=$PLAIN_GREETING"
    """)
    outputs = [kit.cli("create", "-f", manifest, "--env", f"CANARY_B={canary['B']}", "--json")]
    assert outputs[0].code == 0, outputs[0].text
    run_id = outputs[0].json()["id"]
    wait_for(lambda: kit.listing()[run_id]["status"] == "idle", what="the steps to finish (idle)", timeout=30)

    # The process environment has every value (compared by hash, never printed) ...
    for name, value in canary.items():
        assert kit.exec(run_id, f"cat /tmp/CANARY_{name}.sha").strip() == _sha(value)
    # ... the container's configuration has none: an exec session (configured from it) sees no secret.
    assert kit.exec(run_id, 'echo "${CANARY_A:-unset}"').strip() == "unset"
    inspected = json.dumps(kit.inspect(run_id))
    assert "PLAIN_GREETING=hello-plain" in inspected  # the search below would find a value that is there

    outputs.append(kit.cli("logs", run_id))
    assert "A=*** B=*** C=*** plain=hello-plain" in outputs[-1].out
    outputs.append(kit.cli("describe", run_id, "--json"))
    env = outputs[-1].json()["env"]
    assert env["CANARY_A"] == env["CANARY_B"] == env["CANARY_C"] == "***"
    assert env["PLAIN_GREETING"] == "hello-plain"
    outputs.append(kit.cli("describe", run_id))
    outputs.append(kit.cli("list"))
    outputs.append(kit.cli("terminate", run_id))
    assert outputs[-1].code == 0
    outputs.append(kit.cli("logs", run_id))  # from the persisted copy now
    assert "A=*** B=*** C=*** plain=hello-plain" in outputs[-1].out

    for value in canary.values():
        forms = (value, base64.b64encode(value.encode()).decode())
        for form in forms:
            assert form not in inspected
            assert all(form not in output.text for output in outputs)
            assert kit.files_containing(form.encode()) == []
    # The search itself works: the stored secret is found where it belongs.
    assert kit.files_containing(canary["A"].encode(), skip=()) == ["secrets/CANARY_A"]
    kit.assert_clean()


def test_port_in_use_with_explicit_host_port_fails_and_leaves_nothing(kit: RunKit):
    port = free_port()
    with listener(port):
        result = kit.cli("create", "-f", kit.manifest(_httpd(port, host_port=f", host_port: {port}")))
    assert result.code == 1, result.text
    assert "port in use" in result.err
    record = kit.listing()
    assert len(record) == 1
    (run,) = record.values()
    assert run["status"] == "failed" and run["reason"].startswith("port in use")
    kit.assert_clean()


def test_busy_port_falls_back_to_an_ephemeral_one(kit: RunKit):
    port = free_port()
    with listener(port):
        result = kit.cli("create", "-f", kit.manifest(_httpd(port)), "--wait")
        assert result.code == 0, result.text
        assert f"host port {port} is busy" in result.err
        run = next(iter(kit.listing().values()))
        url = run["endpoints"]["web"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(f":{port}")
        assert url in result.out
        assert _get(url) == "page from hello-plain\n"
        binding = kit.inspect(run["id"])["NetworkSettings"]["Ports"][f"{port}/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1" and binding["HostPort"] == url.rsplit(":", 1)[1]
    assert kit.cli("terminate", run["id"]).code == 0
    kit.assert_clean()


def test_missing_image_fails_with_the_image_named(kit: RunKit):
    result = kit.cli("create", "-f", kit.manifest("""
        name: noimage
        resources: {preset: cpu-small}
        image: nonexistent/image:0
        run:
          - command: echo never
    """))
    assert result.code == 1, result.text
    assert "nonexistent/image:0" in result.err
    (run,) = kit.listing().values()
    described = kit.describe(run["id"])
    assert described["status"] == "failed"
    assert "nonexistent/image:0" in described["reason"]
    assert "image" in described["phases"]
    kit.assert_clean()


def test_gpu_request_without_nvidia_runtime_fails_before_creating_anything(kit: RunKit):
    if "nvidia" in (kit.client.info().get("Runtimes") or {}):
        pytest.skip("this engine has an NVIDIA runtime; the no-GPU preflight cannot be exercised here")
    since = int(time.time()) - 1
    manifest = kit.manifest(f"""
        name: gpu
        resources: {{accelerators: "L4:1"}}
        image: {BUSYBOX}
        run:
          - command: echo ran without a GPU
    """)
    result = kit.cli("create", "-f", manifest)
    assert result.code == 3, result.text
    assert "nvidia-container-toolkit" in result.err and "--gpus 0" in result.err
    (run,) = kit.listing().values()
    assert run["status"] == "failed" and run["reason"] == "GPU unavailable"
    kit.assert_clean()

    def store_events() -> list[dict[str, object]]:
        return list(kit.client.events(since=since, until=int(time.time()) + 1, decode=True,
                                      filters={"label": f"ai.runner.store={kit.store_id}"}))

    assert store_events() == [], "nothing of this store may ever have existed in the engine"

    result = kit.cli("create", "-f", manifest, "--gpus", "0", "--json")
    assert result.code == 0, result.text
    assert "running without the 1 GPU(s)" in result.err
    run_id = result.json()["id"]
    assert not kit.inspect(run_id)["HostConfig"].get("DeviceRequests")
    assert kit.wait_exit(run_id) == 0
    assert kit.listing()[run_id]["status"] == "completed"
    assert any(e.get("Action") == "create" for e in store_events())  # the event query sees what happens
    kit.assert_clean()
