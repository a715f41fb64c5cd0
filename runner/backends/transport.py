"""HTTP transports to the Docker engine API.

`SocketTransport` speaks HTTP/1.1 over the engine's unix socket (or plain tcp://) with the
standard library: importing docker-py costs ~0.2 s, more than the whole budget of `runner list`,
so the default path avoids it. `DockerPyTransport` reuses docker-py's connection handling for
engines it does better (TLS, ssh://, Docker contexts). Both expose the same tiny interface, and
the backend above them is written once.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runner.errors import EngineError

DEFAULT_ADDRESS = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT_S = 5.0
ENGINE_HINT = ("start the Docker engine (e.g. `sudo systemctl start docker`, or `make engine` in this repo), "
               "or point DOCKER_HOST at a running one")


class Response(Protocol):
    status: int

    def read(self) -> bytes: ...

    def read_chunk(self, size: int = 65536) -> bytes: ...

    def read_block(self, size: int = 1 << 20) -> bytes: ...

    def close(self) -> None: ...


class Transport(Protocol):
    address: str

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: bytes | Iterable[bytes] | None = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response: ...


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_ADDRESS


def unreachable(address: str, detail: str) -> EngineError:
    return EngineError(f"cannot reach the Docker engine at {address} ({detail})", hint=ENGINE_HINT)


def open_transport(address: str | None = None) -> Transport:
    """The fast stdlib transport when it can serve the address, else docker-py's."""
    address = address or engine_address()
    needs_docker_py = (
        os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CONTEXT")
        or not address.startswith(("unix://", "tcp://", "http://"))
    )
    if needs_docker_py:
        return DockerPyTransport(address)
    return SocketTransport(address)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


class _Dechunker:
    """HTTP/1.1 chunked decoding over big socket reads.

    The engine sends a log as one chunk per line; http.client spends several Python calls per chunk,
    which made `runner logs` slower than `docker logs`. This parses whole buffers at a time.
    """

    READ = 1 << 20

    def __init__(self, fp: Any) -> None:
        self._fp = fp
        self._buffer = bytearray()
        self.done = False

    def read(self, want: int, *, fill: bool) -> bytes:
        out = bytearray()
        while not self.done and len(out) < want:
            self._decode_into(out)
            if self.done or (out and not fill):
                break
            data = self._fp.read1(self.READ)
            if not data:
                self.done = True
                break
            self._buffer += data
        return bytes(out)

    def _decode_into(self, out: bytearray) -> None:
        buffer, position = self._buffer, 0
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            size = int(bytes(buffer[position:line_end]).split(b";", 1)[0] or b"0", 16)
            if size == 0:
                self.done = True  # trailers, if any, are not used
                break
            end = line_end + 2 + size
            if end + 2 > len(buffer):
                break
            out += buffer[line_end + 2:end]
            position = end + 2
        del buffer[:position]


@dataclass
class _HttpResponse:
    status: int
    _raw: http.client.HTTPResponse
    _conn: http.client.HTTPConnection
    _dechunker: _Dechunker | None = None

    def read(self) -> bytes:
        try:
            return self._raw.read()
        finally:
            self.close()

    def _stream(self, size: int, *, fill: bool) -> bytes:
        if self._raw.chunked:
            if self._dechunker is None:
                self._dechunker = _Dechunker(self._raw.fp)
            return self._dechunker.read(size, fill=fill)
        return self._raw.read(size) if fill else self._raw.read1(size)

    def read_chunk(self, size: int = 65536) -> bytes:
        """What has arrived (up to `size`): for streams read as they happen (logs --follow, pulls)."""
        return self._stream(size, fill=False)

    def read_block(self, size: int = 1 << 20) -> bytes:
        """Up to `size` bytes, waiting to fill them: for bulk reads (the engine sends ~one chunk per line)."""
        return self._stream(size, fill=True)

    def close(self) -> None:
        self._conn.close()


class SocketTransport:
    """HTTP over a unix socket or plain TCP, one connection per request."""

    def __init__(self, address: str) -> None:
        self.address = address
        parsed = urllib.parse.urlsplit(address)
        self._unix_path = parsed.path if parsed.scheme == "unix" else None
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 2375

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._unix_path is not None:
            return _UnixConnection(self._unix_path, timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: bytes | Iterable[bytes] | None = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        url = path + ("?" + urllib.parse.urlencode(_flat(params)) if params else "")
        all_headers = {"Host": "docker", **(headers or {})}
        if body is not None and not isinstance(body, bytes):
            all_headers["Transfer-Encoding"] = "chunked"
        conn = self._connection(timeout if timeout is not None else CONNECT_TIMEOUT_S)
        try:
            conn.request(method, url, body=body, headers=all_headers,
                         encode_chunked=body is not None and not isinstance(body, bytes))
            if timeout is None and conn.sock is not None:
                conn.sock.settimeout(None)  # streams (logs --follow, pulls) may be quiet for long
            raw = conn.getresponse()
        except FileNotFoundError:
            conn.close()
            raise unreachable(self.address, "no such socket") from None
        except PermissionError:
            conn.close()
            raise EngineError(f"permission denied on the Docker socket {self.address}",
                              hint="run as root or add your user to the `docker` group") from None
        except (ConnectionError, TimeoutError, OSError) as exc:
            conn.close()
            raise unreachable(self.address, type(exc).__name__) from None
        return _HttpResponse(raw.status, raw, conn)


def _flat(params: Mapping[str, Any]) -> dict[str, str]:
    flat = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            flat[key] = "1" if value else "0"
        elif isinstance(value, (dict, list)):
            flat[key] = json.dumps(value)
        else:
            flat[key] = str(value)
    return flat


class _RequestsResponse:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status = int(response.status_code)
        self._chunks: Iterator[bytes] | None = None

    def read(self) -> bytes:
        try:
            return bytes(self._response.content)
        finally:
            self.close()

    def read_chunk(self, size: int = 65536) -> bytes:
        if self._chunks is None:
            self._chunks = self._response.raw.stream(size, decode_content=True)
        return next(self._chunks, b"")

    def read_block(self, size: int = 1 << 20) -> bytes:
        return bytes(self._response.raw.read(size, decode_content=True) or b"")

    def close(self) -> None:
        self._response.close()


class DockerPyTransport:
    """docker-py's session (TLS, ssh, contexts), driven with the same raw requests."""

    def __init__(self, address: str) -> None:
        self.address = address
        try:
            import docker

            self._api = docker.from_env(timeout=None).api
        except Exception as exc:  # docker-py raises DockerException for any connection problem
            raise unreachable(address, type(exc).__name__) from None

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: bytes | Iterable[bytes] | None = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        url = f"{self._api.base_url}/v{self._api.api_version}{path}"
        try:
            response = self._api.request(method, url, params=_flat(params or {}), data=body,
                                         headers=dict(headers or {}), stream=True, timeout=timeout)
        except Exception as exc:  # requests' ConnectionError and friends
            raise unreachable(self.address, type(exc).__name__) from None
        return _RequestsResponse(response)
