"""R9 — start failures: host port taken, GPU without an NVIDIA runtime, missing entrypoint, image 404.

Pass criterion (reliability.md R9): each ends `failed` with the engine's own message (and no secret),
and leaves 0 objects of the store in the engine — 4/4.

- port in use: an explicit `host_port` held by a listener; Docker's "address already in use" is in
  the reason; the container that the engine created before refusing to start it is gone.
- GPU: refused before anything is created (runner's preflight names the runtimes the engine has;
  the engine is never asked, so no container ever existed — checked with the engine's event log).
  Skipped (and says so) on an engine that has an NVIDIA runtime.
- missing entrypoint, two ways: a step calling a program that does not exist (the shell's "not found",
  exit 127), and an image without /bin/sh at all (built here by `docker import` of a one-file tar),
  where tini cannot exec runner's entrypoint: exit 127 and tini's message in the run's logs.
- image 404: a name no registry serves; the pull error names the image.
Every manifest carries a secret canary, which must appear in no output.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
import time
from collections.abc import Iterator

import docker
import pytest
from docker.errors import ImageNotFound
from oracle import check_consistency
from runkit import RunKit, free_port, listener
from support import BUSYBOX, assert_clean_output, records, run

CANARY = "RNRCANARY" + secrets.token_hex(12)
NO_SHELL_IMAGE = "runner-test/no-shell:r09"


def _manifest(name: str, image: str, command: str, extra: str = "") -> str:
    return f"""
        name: {name}
        resources: {{preset: cpu-small}}
        image: {image}
        env:
          R9_TOKEN: {{value: {CANARY}, secret: true}}
        run:
          - command: {command}
        {extra}
    """


def _events(kit: RunKit, since: int) -> list[dict]:
    return list(kit.client.events(since=since, until=int(time.time()) + 1, decode=True,
                                  filters={"label": f"ai.runner.store={kit.store_id}", "type": "container"}))


def _failed(kit: RunKit, figures, case: str, result, reason_part: str) -> dict:
    assert_clean_output(result)
    assert CANARY not in result.text
    (record,) = [r for r in records(kit).values() if r.name == f"r9-{case}"]
    assert record.status == "failed", (case, record)
    assert reason_part in (record.reason or ""), (case, record.reason)
    assert CANARY not in (record.reason or "")
    assert kit.leftovers() == [], case
    assert kit.files_containing(CANARY.encode()) == []
    assert check_consistency(kit, grace_s=0) == []
    figures.add("R9", start_failures=1, objects_left=len(kit.leftovers()))
    return {"status": record.status, "reason": record.reason, "exit_code": record.exit_code}


def test_host_port_in_use(kit: RunKit, figures):
    port = free_port()
    since = int(time.time()) - 1
    with listener(port):
        result = run(kit, "create", "-f", kit.manifest(_manifest("r9-port", BUSYBOX, "sleep 600", f"""ports:
          - {{name: web, type: http, port: 8080, host_port: {port}}}"""), "port.yaml"), "--wait")
    assert result.code == 1, result.text
    assert "port in use" in result.err and "address already in use" in result.err
    outcome = _failed(kit, figures, "port", result, "address already in use")
    assert outcome["reason"].startswith("port in use: ")
    actions = [e["Action"] for e in _events(kit, since)]
    assert "create" in actions and "destroy" in actions, actions  # it existed, and went


def test_gpu_without_nvidia_runtime(kit: RunKit, figures):
    if "nvidia" in (kit.client.info().get("Runtimes") or {}):
        pytest.skip("this engine has an NVIDIA runtime; the no-GPU failure cannot be exercised here")
    since = int(time.time()) - 1
    manifest = _manifest("r9-gpu", BUSYBOX, "nvidia-smi").replace("{preset: cpu-small}", '{accelerators: "L4:1"}')
    result = run(kit, "create", "-f", kit.manifest(manifest, "gpu.yaml"))
    assert result.code == 3, result.text
    assert "no NVIDIA runtime" in result.err and "nvidia-container-toolkit" in result.err
    assert _failed(kit, figures, "gpu", result, "GPU unavailable")["reason"] == "GPU unavailable"
    assert _events(kit, since) == [], "the engine must never have been asked to create anything"


def test_step_calls_a_missing_program(kit: RunKit, figures):
    result = run(kit, "create", "-f", kit.manifest(_manifest("r9-missing-program", BUSYBOX, "no-such-program --x",
                                                             """ports:
          - {name: web, type: http, port: 8080, host_port: 0}"""), "prog.yaml"), "--wait")
    assert result.code == 1, result.text
    assert "no-such-program: not found" in result.err  # the shell's message, in the last log lines
    outcome = _failed(kit, figures, "missing-program", result, "exit code 127")
    assert outcome["exit_code"] == 127


@pytest.fixture
def no_shell_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """An image with one text file and nothing else: no /bin/sh for runner's entrypoint."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"an image without a shell\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repo, tag = NO_SHELL_IMAGE.split(":")
    docker_client.api.import_image_from_data(buffer.getvalue(), repository=repo, tag=tag)
    yield NO_SHELL_IMAGE
    with contextlib.suppress(ImageNotFound):
        docker_client.images.remove(NO_SHELL_IMAGE, force=True)


def test_image_without_a_shell(kit: RunKit, figures, no_shell_image: str):
    result = run(kit, "create", "-f", kit.manifest(_manifest("r9-no-shell", no_shell_image, "echo never", """ports:
          - {name: web, type: http, port: 8080, host_port: 0}"""), "noshell.yaml"), "--wait")
    assert result.code == 1, result.text
    assert "exec /bin/sh failed: No such file or directory" in result.err  # tini's message, in the last log lines
    outcome = _failed(kit, figures, "no-shell", result, "exit code 127")
    assert outcome["exit_code"] == 127
    logs = kit.cli("logs", next(iter(records(kit))))
    assert "exec /bin/sh failed" in logs.out


def test_image_without_a_shell_names_it_in_the_reason(kit: RunKit, no_shell_image: str):
    result = run(kit, "create", "-f", kit.manifest(_manifest("r9-no-shell", no_shell_image, "echo never", """ports:
          - {name: web, type: http, port: 8080, host_port: 0}"""), "noshell.yaml"), "--wait")
    assert result.code == 1
    (record,) = records(kit).values()
    assert "/bin/sh" in (record.reason or ""), record.reason


def test_image_that_no_registry_serves(kit: RunKit, figures):
    image = f"runner-test/no-such-image-{secrets.token_hex(4)}:404"
    result = run(kit, "create", "-f", kit.manifest(_manifest("r9-404", image, "echo never"), "404.yaml"))
    assert result.code == 1, result.text
    assert f"could not pull {image}" in result.err
    outcome = _failed(kit, figures, "404", result, f"could not pull {image}: ")
    assert len(outcome["reason"]) > len(f"could not pull {image}: "), "the engine's message must follow"
