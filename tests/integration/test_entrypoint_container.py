"""The generated entrypoint with its real paths (`/run/runner`, `/run/secrets`) inside the busybox
test image: files copied in before start (as the engine does), exit code and state read back.

The unit tier runs the same script with its directories moved to a temp dir; this checks the
unpatched paths and busybox's own /bin/sh as PID 1's child under Docker's init.
"""

from __future__ import annotations

import io
import tarfile
from typing import TYPE_CHECKING

from runner.entrypoint import EntrypointSpec, entrypoint_command, entrypoint_files
from runner.manifest.model import CommandStep, WaitStep

if TYPE_CHECKING:
    import docker


def _archive(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (content, mode) in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_entrypoint_runs_steps_with_secrets_in_busybox(docker_client: docker.DockerClient, busybox_image: str,
                                                       test_labels: dict[str, str]) -> None:
    spec = EntrypointSpec(
        steps=(CommandStep("echo one > /tmp/log; (sleep 1; echo bg >> /tmp/log) &"), WaitStep(3, "3s"),
               CommandStep('cat /tmp/log; echo "token=$HF_TOKEN"; exit 5', "/tmp"), CommandStep("echo never")),
        secret_env=("HF_TOKEN",),
    )
    files = {f.path: (f.content, f.mode) for f in entrypoint_files(spec)}
    files["/run/secrets/HF_TOKEN"] = (b"s3cr3t", 0o400)
    container = docker_client.containers.create(busybox_image, entrypoint=list(entrypoint_command()), init=True,
                                                labels=test_labels, environment={"PATH": "/bin"})
    try:
        container.put_archive("/", _archive(files))
        container.start()
        result = container.wait(timeout=60)
        logs = container.logs(stdout=True, stderr=True).decode()
        state = container.get_archive("/run/runner/state")[0]
        raw = b"".join(state)
    finally:
        container.remove(force=True)
    assert result["StatusCode"] == 5, logs
    assert "one\nbg\ntoken=s3cr3t\n" in logs
    assert "[runner] step 3/4 failed with exit code 5" in logs
    assert "never" not in logs
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.extractfile("state")
        assert member is not None
        assert member.read().decode() == "phase=exited\nstep=3\nexit=5\n"
    assert "s3cr3t" not in str(container.attrs["Config"])
