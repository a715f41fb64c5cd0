"""docker/Dockerfile.vllm + docker/vllm-entrypoint.sh, built and run on the real engine without vLLM.

Two stand-in base images are built from the Debian test image (no registry here):
- `runner-test/fake-vllm:1`: a `vllm` script on PATH that records its argv (JSON) and serves /health and a
  one-line /metrics on --port;
- `runner-test/fake-prom:1`: has /bin/prometheus and /bin/promtool where prom/prometheus keeps them (Debian's
  binary links only libc, which the final image, also that Debian, provides).
Dockerfile.vllm is then built with VLLM_IMAGE/PROM_IMAGE pointed at them, from a build context holding
exactly the repository files it COPYs at their repository paths, and run with init=True as runner does.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import BuildError, ImageNotFound, NotFound

REPO = Path(__file__).resolve().parents[2]
FAKE_VLLM = "runner-test/fake-vllm:1"
FAKE_PROM = "runner-test/fake-prom:1"
VLLM_PROM = "runner-test/vllm-prometheus:1"
LABEL_KEY = "ai.runner.test"  # the key tests/conftest.py's test_label uses
ARGV_FILE = "/tmp/fake-vllm-argv.json"
SERVER_ARGS = ["my-model", "--port", "8000", "--api-key", "a b"]

FAKE_VLLM_SCRIPT = f'''#!/usr/bin/python3
"""Stand-in for `vllm`: record argv as JSON, then serve GET /health and /metrics on --port (default 8000)."""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
with open("{ARGV_FILE}.tmp", "w") as handle:
    json.dump(args, handle)
os.replace("{ARGV_FILE}.tmp", "{ARGV_FILE}")
port = int(args[args.index("--port") + 1]) if "--port" in args else 8000


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = {{"/health": b"", "/metrics": b"fake_vllm_up 1\\n"}}.get(self.path)
        self.send_response(404 if body is None else 200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


HTTPServer(("0.0.0.0", port), Handler).serve_forever()
'''

FAKE_VLLM_DOCKERFILE = """ARG BASE
FROM ${BASE}
COPY vllm /usr/local/bin/vllm
RUN chmod 0755 /usr/local/bin/vllm
"""

# prom/prometheus keeps its binaries in /bin. On merged-/usr Debian /bin is /usr/bin, so they are already
# there; otherwise copy them.
FAKE_PROM_DOCKERFILE = """ARG BASE
FROM ${BASE}
RUN test -x /bin/prometheus || cp /usr/bin/prometheus /usr/bin/promtool /bin/
RUN /bin/prometheus --version && /bin/promtool --version
"""

# Lists processes as JSON [pid, ppid, exe, argv] from /proc; run inside the container.
PS_SCRIPT = """
import json, os
rows = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[:-1]
        ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        continue
    rows.append([int(pid), ppid, exe, [a.decode() for a in argv]])
print(json.dumps(rows))
"""


def tar_context(files: dict[str, bytes]) -> io.BytesIO:
    """An in-memory build context: {path inside the context: content}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755 if name.endswith(".sh") or name == "vllm" else 0o644
            archive.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


def build(client: docker.DockerClient, files: dict[str, bytes], tag: str, labels: dict[str, str],
          **options: Any) -> None:
    """Build `tag` from an in-memory context with the classic builder; fail with the build log."""
    try:
        client.images.build(fileobj=tar_context(files), custom_context=True, tag=tag, labels=labels,
                            rm=True, forcerm=True, pull=False, **options)
    except BuildError as error:
        log = "".join(str(chunk.get("stream", chunk)) for chunk in error.build_log)
        pytest.fail(f"building {tag} failed: {error.msg}\n{log}", pytrace=False)


def remove_images(client: docker.DockerClient, selector: str) -> None:
    """Remove the images this module built (newest first, so children go before parents)."""
    for tag in (VLLM_PROM, FAKE_VLLM, FAKE_PROM):
        with contextlib.suppress(ImageNotFound, NotFound):
            client.images.remove(tag, force=True)
    for image in client.images.list(filters={"label": selector}):
        with contextlib.suppress(ImageNotFound, NotFound):
            client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def vllm_prom_image(docker_client: docker.DockerClient, python_image: str) -> Iterator[str]:
    """Dockerfile.vllm built on the two stand-ins; every image is labelled and removed afterwards."""
    selector_value = f"dockerfile-vllm-{uuid.uuid4().hex}"
    labels = {LABEL_KEY: selector_value}
    try:
        base = {"BASE": python_image}
        build(docker_client, {"Dockerfile": FAKE_VLLM_DOCKERFILE.encode(), "vllm": FAKE_VLLM_SCRIPT.encode()},
              FAKE_VLLM, labels, buildargs=base)
        build(docker_client, {"Dockerfile": FAKE_PROM_DOCKERFILE.encode()}, FAKE_PROM, labels, buildargs=base)
        repo_files = ("docker/Dockerfile.vllm", "docker/vllm-entrypoint.sh", "monitoring/prometheus.yml")
        build(docker_client, {path: (REPO / path).read_bytes() for path in repo_files}, VLLM_PROM, labels,
              dockerfile="docker/Dockerfile.vllm",
              buildargs={"VLLM_IMAGE": FAKE_VLLM, "PROM_IMAGE": FAKE_PROM})
        yield VLLM_PROM
    finally:
        remove_images(docker_client, f"{LABEL_KEY}={selector_value}")


def run(client: docker.DockerClient, image: str, labels: dict[str, str], **options: Any) -> Any:
    """Start the image detached the way runner does (init process), labelled for cleanup."""
    return client.containers.run(image, SERVER_ARGS, detach=True, init=True, labels=labels, **options)


def exec_out(container: Any, command: list[str]) -> tuple[int, str]:
    """(exit code, stdout+stderr) of a command inside the container."""
    result = container.exec_run(command)
    return result.exit_code, result.output.decode(errors="replace")


def recorded_argv(container: Any, wait_for: Callable[..., None]) -> list[str]:
    """The argv the fake `vllm` recorded, once it has."""
    wait_for(lambda: exec_out(container, ["test", "-s", ARGV_FILE])[0] == 0 or not is_running(container),
             what="the fake vllm to record its argv", timeout=60)
    code, output = exec_out(container, ["cat", ARGV_FILE])
    assert code == 0, f"no argv recorded; container logs:\n{container.logs().decode(errors='replace')}"
    return list(json.loads(output))


def is_running(container: Any) -> bool:
    """True while the container's state is running."""
    container.reload()
    return bool(container.status == "running")


def processes(container: Any) -> list[tuple[int, int, str, list[str]]]:
    """[(pid, ppid, exe, argv)] of the processes in the container."""
    code, output = exec_out(container, ["python3", "-c", PS_SCRIPT])
    assert code == 0, output
    return [(pid, ppid, exe, argv) for pid, ppid, exe, argv in json.loads(output)]


def test_prometheus_runs_and_vllm_gets_the_arguments_unchanged(
    docker_client: docker.DockerClient, vllm_prom_image: str, test_labels: dict[str, str], wait_for: Any,
) -> None:
    container = run(docker_client, vllm_prom_image, test_labels)

    assert recorded_argv(container, wait_for) == ["serve", *SERVER_ARGS]
    wait_for(lambda: exec_out(container, ["curl", "-fsS", "http://127.0.0.1:9090/-/ready"])[0] == 0,
             what="prometheus /-/ready inside the container", timeout=60)

    rows = processes(container)
    server = [row for row in rows if row[3][1:3] == ["/usr/local/bin/vllm", "serve"]]
    assert len(server) == 1, rows
    # exec, not a child of the shell: the server's parent is the init process (PID 1).
    assert server[0][1] == 1, rows
    prometheus = [row for row in rows if row[2] == "/usr/local/bin/prometheus"]
    assert len(prometheus) == 1, rows
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus[0][3]
    assert "--storage.tsdb.path=/prometheus" in prometheus[0][3]

    def vllm_target_up() -> bool:
        code, output = exec_out(container, ["curl", "-fsS", "http://127.0.0.1:9090/api/v1/targets"])
        targets = json.loads(output)["data"]["activeTargets"] if code == 0 else []
        return any(t["labels"]["job"] == "vllm" and t["health"] == "up" for t in targets)

    wait_for(vllm_target_up, what="prometheus to scrape the server at localhost:8000", timeout=60)
    assert b"[prometheus] " in container.logs()

    container.stop(timeout=20)
    # 143 = terminated by the SIGTERM init forwarded to the server; 137 would mean it had to be killed.
    assert container.wait(timeout=30)["StatusCode"] == 143


def test_prometheus_can_be_disabled(
    docker_client: docker.DockerClient, vllm_prom_image: str, test_labels: dict[str, str], wait_for: Any,
) -> None:
    container = run(docker_client, vllm_prom_image, test_labels, environment={"RUNNER_PROMETHEUS": "0"})

    assert recorded_argv(container, wait_for) == ["serve", *SERVER_ARGS]
    assert not [row for row in processes(container) if row[2].endswith("/prometheus")]
    assert exec_out(container, ["curl", "-fsS", "http://127.0.0.1:9090/-/ready"])[0] != 0


def test_server_command_is_overridable(
    docker_client: docker.DockerClient, vllm_prom_image: str, test_labels: dict[str, str], wait_for: Any,
) -> None:
    environment = {"RUNNER_SERVER_CMD": "vllm bench  serve", "RUNNER_PROMETHEUS": "0"}
    container = run(docker_client, vllm_prom_image, test_labels, environment=environment)

    assert recorded_argv(container, wait_for) == ["bench", "serve", *SERVER_ARGS]
