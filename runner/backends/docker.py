"""The Docker backend: the only code that talks to the engine. It knows `ContainerSpec`, never a manifest.

Every call is one engine API request through a `Transport`; errors become `EngineError` (exit 3)
carrying the engine's own message, or `EngineNotFound` for 404s. Objects are found by label.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from runner.backends.base import ContainerState, ContainerSummary, EngineInfo, EngineNotFound
from runner.backends.spec import LABEL_RUN_ID, LABEL_STORE, ContainerFile, ContainerSpec, VolumeSpec
from runner.backends.transport import Response, Transport, open_transport
from runner.errors import EngineError

MAX_READ_FILE_BYTES = 1 << 20
STOP_REQUEST_MARGIN_S = 30.0


class EngineApiError(EngineError):
    def __init__(self, status: int, message: str, action: str) -> None:
        super().__init__(f"Docker refused to {action}: {message}")
        self.status = status
        self.engine_message = message


class DockerBackend:
    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or open_transport()

    @property
    def address(self) -> str:
        return self.transport.address

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, method: str, path: str, action: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None, data: bytes | Iterable[bytes] | None = None,
              headers: Mapping[str, str] | None = None, timeout: float | None = 60.0,
              stream: bool = False) -> Response:
        all_headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        response = self.transport.request(method, path, params=params, body=data, headers=all_headers,
                                          timeout=timeout)
        if response.status >= 400:
            message = _error_message(response.read())
            if response.status == 404:
                raise EngineNotFound(404, message, action)
            raise EngineApiError(response.status, message, action)
        if not stream and response.status == 204:
            response.close()
        return response

    def _json(self, method: str, path: str, action: str, **kwargs: Any) -> Any:
        raw = self._call(method, path, action, **kwargs).read()
        return json.loads(raw) if raw.strip() else None

    # -- engine ---------------------------------------------------------------------------------
    def info(self) -> EngineInfo:
        data = self._json("GET", "/info", "describe itself", timeout=10.0)
        runtimes = tuple(sorted((data.get("Runtimes") or {}).keys()))
        cdi = tuple(device.get("ID", "") for device in (data.get("DiscoveredDevices") or [])
                    if str(device.get("Source", "")).lower() == "cdi")
        return EngineInfo(
            address=self.address, version=str(data.get("ServerVersion", "?")), runtimes=runtimes,
            cdi_devices=cdi, live_restore=bool(data.get("LiveRestoreEnabled")),
            cpu_count=int(data.get("NCPU") or 0), memory_bytes=int(data.get("MemTotal") or 0),
        )

    # -- images ---------------------------------------------------------------------------------
    def image_present(self, ref: str) -> bool:
        try:
            self._call("GET", f"/images/{ref}/json", "inspect the image", timeout=10.0).read()
        except EngineNotFound:
            return False
        return True

    def image_config(self, ref: str) -> dict[str, Any]:
        data = self._json("GET", f"/images/{ref}/json", "inspect the image", timeout=10.0)
        return dict(data.get("Config") or {})

    def pull(self, ref: str, auth_header: str | None) -> Iterator[dict[str, Any]]:
        """Stream the pull's progress events; the stream must be consumed for the pull to finish."""
        image, tag = split_image_ref(ref)
        headers = {"X-Registry-Auth": auth_header} if auth_header else None
        response = self._call("POST", "/images/create", f"pull {ref}", params={"fromImage": image, "tag": tag},
                              headers=headers, timeout=None, stream=True)
        return _json_lines(response)

    def build(self, context_tar: Iterable[bytes], params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        response = self._call("POST", "/build", "build the image", params=params, data=context_tar,
                              headers={"Content-Type": "application/x-tar"}, timeout=None, stream=True)
        return _json_lines(response)

    def tag_image(self, image_id: str, repo: str, tag: str) -> None:
        self._call("POST", f"/images/{image_id}/tag", "tag the image", params={"repo": repo, "tag": tag}).read()

    def remove_image(self, ref: str) -> None:
        with contextlib.suppress(EngineNotFound):
            self._call("DELETE", f"/images/{ref}", "remove the image", params={"force": True}).read()

    def prune_dangling_images(self, labels: Sequence[str]) -> int:
        """Remove untagged images carrying all `labels`; returns how many went."""
        data = self._json("POST", "/images/prune", "prune images",
                          params={"filters": {"dangling": ["true"], "label": list(labels)}}, timeout=120.0)
        return len((data or {}).get("ImagesDeleted") or [])

    # -- containers -----------------------------------------------------------------------------
    def create_volume(self, volume: VolumeSpec, labels: Mapping[str, str]) -> None:
        body = {"Name": volume.name, "Driver": "local", "DriverOpts": dict(volume.driver_opts), "Labels": dict(labels)}
        self._json("POST", "/volumes/create", f"create volume {volume.name}", body=body)

    def create_container(self, spec: ContainerSpec) -> str:
        body = _container_body(spec)
        data = self._json("POST", "/containers/create", "create the container", params={"name": spec.name},
                          body=body)
        return str(data["Id"])

    def put_files(self, container_id: str, files: Sequence[ContainerFile]) -> None:
        if not files:
            return
        self._call("PUT", f"/containers/{container_id}/archive", "copy files into the container",
                   params={"path": "/"}, data=_tar(files), headers={"Content-Type": "application/x-tar"}).read()

    def start(self, container_id: str) -> None:
        self._call("POST", f"/containers/{container_id}/start", "start the container").read()

    def stop(self, container_id: str, grace_s: float) -> None:
        seconds = max(0, int(grace_s))
        with contextlib.suppress(EngineNotFound):
            self._call("POST", f"/containers/{container_id}/stop", "stop the container", params={"t": seconds},
                       timeout=seconds + STOP_REQUEST_MARGIN_S).read()

    def kill(self, container_id: str, signal: str = "KILL") -> None:
        with contextlib.suppress(EngineNotFound, EngineApiError):
            self._call("POST", f"/containers/{container_id}/kill", "kill the container",
                       params={"signal": signal}).read()

    def remove_container(self, container_id: str) -> None:
        with contextlib.suppress(EngineNotFound):
            self._call("DELETE", f"/containers/{container_id}", "remove the container",
                       params={"force": True, "v": False}).read()

    def inspect(self, ref: str) -> ContainerState | None:
        try:
            data = self._json("GET", f"/containers/{ref}/json", "inspect the container", timeout=15.0)
        except EngineNotFound:
            return None
        return _state(data)

    def list_managed(self, store_id: str, run_id: str | None = None) -> list[ContainerSummary]:
        labels = [f"{LABEL_STORE}={store_id}"] + ([f"{LABEL_RUN_ID}={run_id}"] if run_id else [])
        data = self._json("GET", "/containers/json", "list containers",
                          params={"all": True, "filters": {"label": labels}}, timeout=15.0)
        return [_summary(item) for item in data or ()]

    def wait(self, container_id: str, timeout: float | None = None) -> int | None:
        try:
            data = self._json("POST", f"/containers/{container_id}/wait", "wait for the container",
                              timeout=timeout)
        except EngineNotFound:
            return None
        return int(data.get("StatusCode", -1))

    def logs(self, container_id: str, *, follow: bool, tail: int | None = None,
             timestamps: bool = False, since: float | None = None) -> Response:
        """The raw multiplexed log stream; decode it with `runner.backends.logstream`."""
        params = {"stdout": True, "stderr": True, "follow": follow, "timestamps": timestamps,
                  "tail": "all" if tail is None else str(tail), "since": since}
        return self._call("GET", f"/containers/{container_id}/logs", "read the logs", params=params,
                          timeout=None, stream=True)

    def read_file(self, container_id: str, path: str, limit: int = MAX_READ_FILE_BYTES) -> bytes | None:
        """A small regular file from a (possibly stopped) container, or None if absent."""
        try:
            archive = self._call("GET", f"/containers/{container_id}/archive", "read a file",
                                 params={"path": path}).read()
        except EngineNotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(archive[: limit + 64 * 1024])) as tar:
            for member in tar:
                if member.isfile() and member.size <= limit:
                    handle = tar.extractfile(member)
                    return handle.read() if handle else None
        return None

    def read_dir_files(self, container_id: str, path: str, limit: int = MAX_READ_FILE_BYTES) -> dict[str, bytes]:
        """Regular files directly inside a directory of a container (e.g. /run/secrets)."""
        try:
            archive = self._call("GET", f"/containers/{container_id}/archive", "read files",
                                 params={"path": path}).read()
        except EngineNotFound:
            return {}
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(archive[:limit])) as tar:
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    files[member.name.rsplit("/", 1)[-1]] = handle.read()
        return files

    def stats(self, container_id: str) -> dict[str, Any] | None:
        try:
            data = self._json("GET", f"/containers/{container_id}/stats", "read container stats",
                              params={"stream": False, "one-shot": True}, timeout=15.0)
        except EngineNotFound:
            return None
        return dict(data or {})

    # -- volumes --------------------------------------------------------------------------------
    def list_volumes(self, labels: Sequence[str]) -> list[dict[str, Any]]:
        data = self._json("GET", "/volumes", "list volumes", params={"filters": {"label": list(labels)}})
        return list((data or {}).get("Volumes") or [])

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(EngineNotFound):
            self._call("DELETE", f"/volumes/{name}", f"remove volume {name}", params={"force": True}).read()


def split_image_ref(ref: str) -> tuple[str, str]:
    """`repo/name:tag` → (repo/name, tag); digests and registry ports are kept intact."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return name, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
        return name, tag
    return ref, "latest"


def _container_body(spec: ContainerSpec) -> dict[str, Any]:
    host: dict[str, Any] = {
        "Init": spec.init,
        "RestartPolicy": {"Name": "no"},
        "AutoRemove": False,
        "LogConfig": {"Type": "json-file",
                      "Config": {"max-size": spec.log_max_size, "max-file": str(spec.log_max_files)}},
        "Mounts": [{"Type": m.type, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
                   for m in spec.mounts],
        "PortBindings": {
            f"{p.container_port}/{p.protocol}": [{"HostIp": p.host_ip, "HostPort": str(p.host_port or "")}]
            for p in spec.ports
        },
    }
    if spec.nano_cpus:
        host["NanoCpus"] = spec.nano_cpus
    if spec.memory_bytes:
        host["Memory"] = spec.memory_bytes
    if spec.shm_size_bytes:
        host["ShmSize"] = spec.shm_size_bytes
    if spec.ipc_host:
        host["IpcMode"] = "host"
    if spec.gpu_count:
        host["DeviceRequests"] = [{"Driver": "", "Count": spec.gpu_count, "Capabilities": [["gpu"]]}]
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{name}={value}" for name, value in spec.env],
        "Labels": dict(spec.labels),
        "ExposedPorts": {f"{p.container_port}/{p.protocol}": {} for p in spec.ports},
        "StopTimeout": spec.stop_timeout_s,
        "HostConfig": host,
    }
    if spec.entrypoint is not None:
        body["Entrypoint"] = list(spec.entrypoint)
    if spec.command is not None:
        body["Cmd"] = list(spec.command)
    if spec.working_dir:
        body["WorkingDir"] = spec.working_dir
    return body


def _tar(files: Sequence[ContainerFile]) -> bytes:
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories = sorted({parent for f in files for parent in _parents(f.path)})
        for directory in directories:
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for file in files:
            info = tarfile.TarInfo(file.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(file.content), file.mode, now
            tar.addfile(info, io.BytesIO(file.content))
    return buffer.getvalue()


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message", "")).strip() or raw.decode(errors="replace").strip()
    except (ValueError, AttributeError):
        return raw.decode(errors="replace").strip()[:500]


def _json_lines(response: Response) -> Iterator[dict[str, Any]]:
    buffer = b""
    try:
        while True:
            chunk = response.read_chunk()
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
        if buffer.strip():
            yield json.loads(buffer)
    finally:
        response.close()


def parse_engine_time(text: str | None) -> float | None:
    """RFC 3339 with nanoseconds ("2024-01-01T10:00:00.123456789Z"); the zero time means never."""
    if not text or text.startswith("0001-01-01"):
        return None
    main, _, rest = text.partition(".")
    fraction, zone = "", "Z"
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        fraction = "." + digits[:6]
        zone = rest[len(digits):] or "Z"
    elif text.endswith("Z"):
        main = text[:-1]
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(main.removesuffix("Z") + fraction + zone).timestamp()


def _state(data: Mapping[str, Any]) -> ContainerState:
    state = data.get("State") or {}
    ports: dict[str, tuple[str, int]] = {}
    for key, bindings in ((data.get("NetworkSettings") or {}).get("Ports") or {}).items():
        for binding in bindings or ():
            if binding.get("HostPort"):
                ports.setdefault(key, (binding.get("HostIp", ""), int(binding["HostPort"])))
    return ContainerState(
        id=str(data.get("Id", "")),
        name=str(data.get("Name", "")).lstrip("/"),
        status=str(state.get("Status", "unknown")),
        running=bool(state.get("Running")),
        exit_code=int(state["ExitCode"]) if state.get("ExitCode") is not None else None,
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        started_at=parse_engine_time(state.get("StartedAt")),
        finished_at=parse_engine_time(state.get("FinishedAt")),
        labels=dict((data.get("Config") or {}).get("Labels") or {}),
        ports=ports,
    )


def _summary(item: Mapping[str, Any]) -> ContainerSummary:
    names = item.get("Names") or [""]
    return ContainerSummary(
        id=str(item.get("Id", "")),
        name=str(names[0]).lstrip("/"),
        state=str(item.get("State", "")),
        labels=dict(item.get("Labels") or {}),
        created=float(item.get("Created") or 0),
    )
