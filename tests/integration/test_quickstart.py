"""The quickstart end to end on the real engine: manifests/quickstart.yaml builds the CPU demo image
(docker/demo) and runs it with Prometheus in the same container; the official `openai` client talks to it
through the published port with the API key; the in-container Prometheus scrapes the vLLM-named metrics;
`runner exporter` reports the run; `runner terminate` exports the HF cache as a new artifact version; the key
never leaks.

One run is shared by the whole module (created by the `quickstart` fixture, terminated by the last test or by
the fixture's finalizer). The demo image `runner-demo:quickstart` and its base `runner-demo-base:1` are shared
with `make quickstart` and stay; everything the run creates is removed and checked by the store label.
The quickstart publishes fixed host ports 8000 and 9090 (as vllm-run.yaml does), so they must be free.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import openai
import pytest
from docker.errors import APIError, ImageNotFound
from prometheus_client.parser import text_string_to_metric_families

from runner.builds import BUILD_HASH_LABEL

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifests" / "quickstart.yaml"
RUNNER = str(Path(sys.executable).with_name("runner"))
DEMO_BASE = "runner-demo-base:1"
DEMO_IMAGE = "runner-demo:quickstart"
MODEL = "runner-demo"
ARTIFACT = "runner/quickstart/huggingface-models"
CLI_TIMEOUT_S = 300


def poll(condition: Callable[[], bool], *, what: str, timeout: float) -> None:
    """Poll with a deadline (the module-scoped twin of tests/integration/conftest.py's `wait_for`)."""
    deadline = time.monotonic() + timeout
    interval = 0.1
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}", pytrace=False)
        time.sleep(interval)
        interval = min(interval * 2, 1.0)


@dataclass
class Quickstart:
    home: Path
    env: dict[str, str]
    key: str
    created: dict[str, Any]  # `runner create --json`
    create_stderr: str
    store_id: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.created["id"])

    @property
    def api(self) -> str:
        return str(self.created["endpoints"]["vllm"])

    @property
    def prom(self) -> str:
        return str(self.created["endpoints"]["prometheus"])

    def runner(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RUNNER, *args], capture_output=True, text=True, env=self.env,
                              timeout=CLI_TIMEOUT_S, check=False)

    def openai(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.api + "/v1", api_key=key or self.key, max_retries=0, timeout=30)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(url: str) -> Any:
    status, body = http_get(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def image_id_or_none(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except ImageNotFound:
        return None


def remove_if_dangling(client: docker.DockerClient, image_id: str | None) -> None:
    """A rebuild moves the shared tag; the image it left behind goes too (unless something still uses it)."""
    if image_id is None or image_id == image_id_or_none(client, DEMO_IMAGE):
        return
    with contextlib.suppress(ImageNotFound, APIError):
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)


def store_id_of(home: Path) -> str:
    with sqlite3.connect(home / "runner.db") as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0])


@pytest.fixture(scope="module")
def demo_base(docker_client: docker.DockerClient, python_image: str) -> str:
    """`runner-demo-base:1`: the quickstart's local base, a tag of the Debian test image (kept afterwards)."""
    try:
        docker_client.images.get(DEMO_BASE)
    except ImageNotFound:
        docker_client.images.get(python_image).tag(DEMO_BASE)
    return DEMO_BASE


@pytest.fixture(scope="module")
def quickstart(docker_client: docker.DockerClient, demo_base: str, tmp_path_factory: pytest.TempPathFactory,
               purge_label: Callable[[str], list[str]]) -> Iterator[Quickstart]:
    home = tmp_path_factory.mktemp("quickstart") / "runner-home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "RUNNER_HOME": str(home), "RUNNER_DEMO_BASE": demo_base}
    env.pop("API_KEY", None)
    key = f"qs-{secrets.token_urlsafe(24)}"
    images_seen = [image_id_or_none(docker_client, DEMO_IMAGE)]  # removed at the end if a rebuild orphaned them
    done = subprocess.run([RUNNER, "create", "-f", str(MANIFEST), "--wait", "--timeout", "180", "--json",
                           "--env", f"API_KEY={key}"], capture_output=True, text=True, env=env,
                          timeout=CLI_TIMEOUT_S, check=False)
    store = f"ai.runner.store={store_id_of(home)}" if (home / "runner.db").exists() else None
    try:
        assert done.returncode == 0, f"create failed ({done.returncode}):\n{done.stderr}\n{done.stdout}"
        created = json.loads(done.stdout)
        images_seen.append(str(docker_client.api.inspect_container(f"runner-{created['id']}")["Image"]))
        qs = Quickstart(home=home, env=env, key=key, created=created, create_stderr=done.stderr,
                        store_id=store_id_of(home))
        yield qs
        if not qs.state.get("terminated"):
            qs.runner("terminate", qs.run_id)
        assert docker_client.containers.list(all=True, filters={"label": store}) == [], "run left a container"
        assert docker_client.volumes.list(filters={"label": store}) == [], "run left a volume"
    finally:
        if store is not None:
            purge_label(store)
        for image_id in images_seen:
            remove_if_dangling(docker_client, image_id)


def test_create_built_the_demo_image_and_reports_both_endpoints(
        quickstart: Quickstart, docker_client: docker.DockerClient) -> None:
    created = quickstart.created
    assert created["status"] == "running" and created["ready"] is True, created
    assert created["name"] == "quickstart"
    assert set(created["endpoints"]) == {"vllm", "prometheus"}
    assert quickstart.api.startswith("http://127.0.0.1:") and quickstart.prom.startswith("http://127.0.0.1:")
    # First run: the cache artifact does not exist yet, and create says so.
    assert f"artifact {ARTIFACT} does not exist yet" in quickstart.create_stderr
    image = docker_client.images.get(DEMO_IMAGE)
    assert BUILD_HASH_LABEL in image.labels
    container = docker_client.api.inspect_container(f"runner-{quickstart.run_id}")
    assert container["Image"] == image.id
    ports = container["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for p in ("8000/tcp", "9090/tcp") for b in ports[p]} == {"127.0.0.1"}


def test_demo_image_rebuild_is_skipped_when_nothing_changed(
        quickstart: Quickstart, docker_client: docker.DockerClient) -> None:
    # A forced build really runs docker/demo/Dockerfile through the engine's streaming build (the layers come
    # from the builder cache). It comes first so that the check below does not depend on nobody having edited
    # the repository (the build context) since the fixture's create.
    forced = quickstart.runner("build", "-f", str(MANIFEST), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Step 1/" in forced.stderr and "COPY docker/demo/server.py" in forced.stderr, forced.stderr
    assert forced.stdout.strip() == f"built {DEMO_IMAGE}"
    image_id = docker_client.images.get(DEMO_IMAGE).id

    skipped = quickstart.runner("build", "-f", str(MANIFEST))
    assert skipped.returncode == 0, skipped.stderr
    assert f"image {DEMO_IMAGE} is up to date" in skipped.stderr and "build skipped" in skipped.stderr
    assert "Step 1/" not in skipped.stderr
    assert skipped.stdout.strip() == f"{DEMO_IMAGE} (up to date, not rebuilt)"
    assert docker_client.images.get(DEMO_IMAGE).id == image_id


def test_openai_client_streams_and_completes_with_the_key(quickstart: Quickstart) -> None:
    client = quickstart.openai()
    assert MODEL in [model.id for model in client.models.list()]

    stream = client.chat.completions.create(model=MODEL, stream=True, max_tokens=12,
                                            messages=[{"role": "user", "content": "Hello!"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 2 and text.strip(), chunks
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    completion = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8)
    assert completion.choices[0].text.strip()
    assert completion.usage is not None and completion.usage.completion_tokens >= 1

    pieces = list(client.completions.create(model=MODEL, prompt="Tell me", max_tokens=6, stream=True))
    assert len(pieces) >= 2 and "".join(p.choices[0].text for p in pieces if p.choices).strip()


def test_api_key_is_enforced_on_v1_only(quickstart: Quickstart) -> None:
    with pytest.raises(openai.AuthenticationError):
        quickstart.openai(key="not-the-key").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello!"}])
    assert http_get(quickstart.api + "/v1/models")[0] == 401
    assert http_get(quickstart.api + "/v1/models", {"Authorization": "Bearer nope"})[0] == 401
    assert http_get(quickstart.api + "/v1/models", {"Authorization": f"Bearer {quickstart.key}"})[0] == 200
    # Like vLLM, the health check and the metrics stay open.
    assert http_get(quickstart.api + "/health") == (200, b"")
    status, metrics = http_get(quickstart.api + "/metrics")
    assert status == 200 and b"vllm:num_requests_running" in metrics


def test_in_container_prometheus_scrapes_the_vllm_metrics(quickstart: Quickstart) -> None:
    def vllm_target_up() -> bool:
        targets = get_json(quickstart.prom + "/api/v1/targets")["data"]["activeTargets"]
        return any(t["labels"]["job"] == "vllm" and t["health"] == "up" for t in targets)

    poll(vllm_target_up, what="Prometheus's vllm target to be up", timeout=60)
    client = quickstart.openai()
    for _ in range(3):
        client.chat.completions.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    query = quickstart.prom + "/api/v1/query?" + urllib.parse.urlencode({"query": "vllm:generation_tokens_total"})
    series: list[dict[str, Any]] = []

    def has_tokens() -> bool:
        series[:] = get_json(query)["data"]["result"]
        return any(float(s["value"][1]) >= 15 for s in series)  # at least the 3 x 5 tokens just generated

    poll(has_tokens, what="Prometheus to hold vllm:generation_tokens_total", timeout=60)
    assert {s["metric"]["model_name"] for s in series} == {MODEL}, series
    assert {s["metric"]["job"] for s in series} == {"vllm"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def exporter(quickstart: Quickstart) -> Iterator[Callable[[], str]]:
    """Starts `runner exporter` on a free port; yields a function returning one scrape of /metrics."""
    port = _free_port()
    process = subprocess.Popen([RUNNER, "exporter", "--port", str(port)], env=quickstart.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"

    def answering() -> bool:
        assert process.poll() is None, f"runner exporter exited: {process.stderr.read() if process.stderr else ''}"
        try:
            return http_get(url)[0] == 200
        except OSError:
            return False

    try:
        poll(answering, what="runner exporter to answer", timeout=30)
        yield lambda: http_get(url)[1].decode()
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stderr:
            process.stderr.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_runner_exporter_reports_the_run(quickstart: Quickstart, exporter: Callable[[], str]) -> None:
    text = exporter()
    assert 'runner_runs{status="running"} 1.0' in text.splitlines(), text
    samples = _samples(text)
    assert samples[("runner_time_to_ready_seconds_count", ())] >= 1
    for phase in ("image", "imports", "start", "ready"):
        assert samples[("runner_phase_duration_seconds_count", (("phase", phase),))] >= 1, phase
    assert ("runner_exports_total", (("result", "published"),)) in samples
    run = (("name", "quickstart"), ("run_id", quickstart.run_id))
    assert samples[("runner_container_cpu_seconds_total", run)] > 0
    assert samples[("runner_container_memory_bytes", run)] > 1e6


def test_runner_exporter_refuses_a_busy_port(quickstart: Quickstart) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = quickstart.runner("exporter", "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "serving runner metrics" not in result.stderr and "internal error" not in result.stderr


def _files_mentioning(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.relative_to(root).parts[0] == "secrets":
            continue
        if needle in path.read_bytes():
            hits.append(str(path.relative_to(root)))
    return hits


def test_the_api_key_never_leaks_while_running(quickstart: Quickstart, docker_client: docker.DockerClient) -> None:
    needle = quickstart.key
    container = docker_client.api.inspect_container(f"runner-{quickstart.run_id}")
    assert needle not in json.dumps(container)
    assert needle not in json.dumps(docker_client.api.inspect_image(container["Image"]))
    for args in (("logs", quickstart.run_id), ("describe", quickstart.run_id, "--json"), ("list", "--json")):
        result = quickstart.runner(*args)
        assert result.returncode == 0, result.stderr
        assert needle not in result.stdout + result.stderr, args
    assert _files_mentioning(quickstart.home, needle.encode()) == []
    # ...yet the server has it (from /run/secrets via the runner entrypoint): the key-less call above got 401.
    assert http_get(quickstart.api + "/v1/models", {"Authorization": f"Bearer {needle}"})[0] == 200


def test_terminate_exports_the_cache_artifact(quickstart: Quickstart, docker_client: docker.DockerClient) -> None:
    before = quickstart.runner("artifact", "show", ARTIFACT, "--json")
    assert before.returncode != 0, "the artifact should not exist before the first quickstart ends"

    result = quickstart.runner("terminate", quickstart.run_id, "--json")
    quickstart.state["terminated"] = True
    assert result.returncode == 0, result.stderr
    [ended] = json.loads(result.stdout)
    assert ended["status"] == "terminated" and ended["reason"] == "terminated by user", ended

    shown = quickstart.runner("artifact", "show", ARTIFACT, "--json")
    assert shown.returncode == 0, shown.stderr
    artifact = json.loads(shown.stdout)
    [version] = artifact["versions"]
    assert version["latest"] and version["source_run_id"] == quickstart.run_id, version
    log = Path(version["path"]) / "quickstart-runs.log"
    assert log.read_text().startswith("quickstart server started "), log.read_text()

    store = f"ai.runner.store={quickstart.store_id}"
    assert docker_client.containers.list(all=True, filters={"label": store}) == []
    assert docker_client.volumes.list(filters={"label": store}) == []
    # After the run: the persisted logs and everything under RUNNER_HOME still hold no key.
    logs = quickstart.runner("logs", quickstart.run_id)
    assert "Starting vLLM API server on" in logs.stdout and quickstart.key not in logs.stdout + logs.stderr
    assert _files_mentioning(quickstart.home, quickstart.key.encode()) == []
