"""S11 — the served endpoint's API key: 401 without it on every protected route; the key stays secret.

Pass criterion (reliability.md S11): every inference route answers 401 without the key and with a
wrong one — `/v1/*` and the ones vLLM leaves open (`/invocations`, `/tokenize`, `/detokenize`); the key
works; the key (any encoding) is absent from the container's env and labels, `docker inspect` of
container and image, runner's output, logs and every file under RUNNER_HOME (database included).

The server is runner's CPU demo (`runner-demo:quickstart`, docker/demo), which guards those routes like
vLLM's `--api-key` plus the ones vLLM misses; like vLLM, `/health`, `/metrics` and `/version` stay open
(documented; runner publishes on 127.0.0.1, S10). The key is the user's, given as `{API_KEY}` and
delivered as a secret file (runner does not mint keys; `make quickstart` generates one into the secret
store). tests/integration/test_quickstart.py checks /v1 and the leak search for the quickstart run.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound
from oracle import check_consistency
from runkit import RUNNER_BIN, RunKit
from support import assert_clean_output, forms, home_files, run

DEMO_IMAGE = "runner-demo:quickstart"
DEMO_BASE = "runner-demo-base:1"
REPO = Path(__file__).resolve().parents[2]
PROTECTED = [("GET", "/v1/models", None), ("POST", "/v1/completions", {"model": "demo", "prompt": "hi",
                                                                        "max_tokens": 2}),
             ("POST", "/v1/chat/completions", {"model": "demo", "max_tokens": 2,
                                               "messages": [{"role": "user", "content": "hi"}]}),
             ("POST", "/invocations", {"prompt": "hi", "max_tokens": 2}), ("POST", "/tokenize", {"prompt": "hi"}),
             ("POST", "/detokenize", {"tokens": [1, 2]}), ("GET", "/v1/no-such-route", None)]
OPEN = ["/health", "/metrics", "/version"]


@pytest.fixture(scope="module")
def demo_image(docker_client: docker.DockerClient, python_image: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[str]:
    """The quickstart's demo image: used if present (shared with `make quickstart`), else built by runner."""
    try:
        docker_client.images.get(DEMO_IMAGE)
    except ImageNotFound:
        try:
            docker_client.images.get(DEMO_BASE)
        except ImageNotFound:
            docker_client.images.get(python_image).tag(DEMO_BASE)
        home = tmp_path_factory.mktemp("s11-build")
        done = subprocess.run([str(RUNNER_BIN), "build", "-f", str(REPO / "manifests" / "quickstart.yaml")],
                              capture_output=True, text=True, timeout=900, check=False,
                              env={**os.environ, "RUNNER_HOME": str(home), "RUNNER_DEMO_BASE": DEMO_BASE})
        assert done.returncode == 0, done.stderr[-3000:]
    yield DEMO_IMAGE


def _call(url: str, method: str, body: object, key: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_every_protected_route_needs_the_key_and_the_key_never_leaks(kit: RunKit, demo_image: str, figures):
    key = f"s11-{secrets.token_urlsafe(24)}"
    manifest = kit.manifest(f"""
        name: s11-served
        resources: {{preset: cpu-small}}
        image: {demo_image}
        env:
          API_KEY: {{API_KEY}}
        run:
          - command: exec python3 /opt/demo/server.py --host 0.0.0.0 --port 8000 --served-model-name demo
        ports:
          - {{name: api, type: http, port: 8000, host_port: 0, health_path: /health}}
    """, "s11.yaml")
    created = run(kit, "create", "-f", manifest, "--env", f"API_KEY={key}", "--wait", "--timeout", "120", "--json")
    assert created.code == 0, created.text
    run_id = json.loads(created.out)["id"]
    base = json.loads(created.out)["endpoints"]["api"]
    assert base.startswith("http://127.0.0.1:")

    refused = 0
    for method, path, body in PROTECTED:
        for wrong in (None, "not-the-key", key[:-1]):
            status = _call(base + path, method, body, wrong)
            assert status == 401, f"{method} {path} with {'no key' if wrong is None else 'a wrong key'}: {status}"
            refused += 1
        status = _call(base + path, method, body, key)
        expected = 404 if path == "/v1/no-such-route" else 200
        assert status == expected, f"{method} {path} with the key: {status}"
    for path in OPEN:
        assert _call(base + path, "GET", None, None) == 200, path

    container = kit.inspect(run_id)
    image = kit.client.api.inspect_image(container["Image"])
    outputs = [created, run(kit, "logs", run_id), run(kit, "describe", run_id, "--json"), run(kit, "list", "--json")]
    outputs.append(run(kit, "terminate", run_id))
    outputs.append(run(kit, "logs", run_id))
    assert all(o.code == 0 for o in outputs), [o.text[-300:] for o in outputs if o.code]
    assert_clean_output(*outputs)
    files = {str(p.relative_to(kit.home)): p.read_bytes() for p in home_files(kit.home)}
    leaks = []
    for form in forms(key):
        leaks += [f"{form} in {what}" for what, text in (("container env", json.dumps(container["Config"]["Env"])),
                                                         ("labels", json.dumps(container["Config"]["Labels"])),
                                                         ("docker inspect", json.dumps(container)),
                                                         ("image inspect", json.dumps(image))) if form in text]
        leaks += [f"{form} in output {i}" for i, o in enumerate(outputs) if form in o.text]
        leaks += [f"{form} in {name}" for name, data in files.items() if form.encode() in data]
    figures.add("S11", routes_refused=refused, protected_routes=len(PROTECTED), leaks_found=len(leaks))
    assert leaks == []
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()
