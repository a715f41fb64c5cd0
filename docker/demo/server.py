#!/usr/bin/env python3
"""runner's CPU demo workload: an HTTP server shaped like vLLM's OpenAI server. It is NOT a language model.

This module owns the command line, the HTTP surface (routing, bearer auth, JSON and server-sent events,
uvicorn-style access log lines) and the process lifecycle (startup lines, SIGTERM). The "model" and the vLLM
metrics live in `demo_engine`, the OpenAI request/response shapes in `wire_format`. Only the standard library
and `prometheus_client` are used, so the image needs no pip (Debian ships python3-prometheus-client).

    python3 server.py [--host 0.0.0.0] [--port 8000] [--model NAME] [--served-model-name NAME ...]
                      [--api-key-file PATH] [--token-delay-ms 5] [--max-model-len 4096] [--max-num-seqs 16]
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TextIO, cast
from urllib.parse import urlsplit

import prometheus_client
from demo_engine import CompletionRequest, DemoEngine, EngineConfig
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from wire_format import (
    DESCRIPTION,
    ApiError,
    ResponseContext,
    json_object,
    parse_completion,
    plain_prompt,
    usage_of,
)

VERSION = "0.0.0+runner.demo"
MAX_BODY_BYTES = 1 << 20
PROTECTED_PATHS = frozenset({"/invocations", "/tokenize", "/detokenize"})
CONTROL_CHARS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}  # escaped in log lines


def log(message: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Print one vLLM-style log line (`INFO 11-22 08:00:00 [server.py] ...`)."""
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"{level} {stamp} [server.py] {message}", file=stream or sys.stdout, flush=True)


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ServerConfig:
    """Everything the command line and environment decide."""

    host: str
    port: int
    model: str
    served_names: tuple[str, ...]
    api_key: str | None
    engine: EngineConfig


def build_parser() -> argparse.ArgumentParser:
    """The command line, using vLLM's flag names where vLLM has one."""
    parser = argparse.ArgumentParser(description=f"{DESCRIPTION}. Serves a vLLM-shaped OpenAI API.")
    parser.add_argument("--host", default="0.0.0.0",  # noqa: S104 - a container server listens on all
                        help="address to bind (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks a free one")
    parser.add_argument("--model", default="runner-demo", help="model name reported as `root`")
    parser.add_argument("--served-model-name", nargs="+", default=None, metavar="NAME",
                        help="names the API answers to; the first labels the metrics (default: --model)")
    parser.add_argument("--api-key-file", type=Path, default=None,
                        help="file holding the bearer key (else env VLLM_API_KEY, else env API_KEY)")
    parser.add_argument("--token-delay-ms", type=float, default=5.0, help="simulated time per token")
    parser.add_argument("--max-model-len", type=int, default=4096, help="context length in words")
    parser.add_argument("--max-num-seqs", type=int, default=16, help="requests generated concurrently")
    return parser


def resolve_api_key(key_file: Path | None) -> str | None:
    """Key from `--api-key-file`, else `VLLM_API_KEY`, else `API_KEY`; None means an open server."""
    if key_file is not None:
        key = key_file.read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(f"API key file {key_file} is empty")
        return key
    for name in ("VLLM_API_KEY", "API_KEY"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def parse_config(argv: list[str] | None) -> ServerConfig:
    """Parse flags and environment into a `ServerConfig`; exits with status 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.token_delay_ms < 0 or args.max_model_len < 1 or args.max_num_seqs < 1:
        parser.error("--token-delay-ms must be >= 0; --max-model-len and --max-num-seqs must be >= 1")
    try:
        api_key = resolve_api_key(args.api_key_file)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read the API key: {exc}")
    served_names = tuple(args.served_model_name or [args.model])
    return ServerConfig(
        host=args.host, port=args.port, model=args.model,
        served_names=served_names, api_key=api_key,
        engine=EngineConfig(model_name=served_names[0], token_delay_s=args.token_delay_ms / 1000.0,
                            max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs),
    )


# ---------------------------------------------------------------------------------------------- HTTP


class DemoHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the config, the engine and the private metrics registry."""

    daemon_threads = True

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.engine = DemoEngine(config.engine, self.registry)
        super().__init__((config.host, config.port), DemoHandler)


class DemoHandler(BaseHTTPRequestHandler):
    """Routing, bearer auth, JSON and server-sent-event framing; uvicorn-style access log lines."""

    protocol_version = "HTTP/1.1"
    server_version = f"runner-demo/{VERSION}"
    timeout = 75  # seconds an idle keep-alive connection may hold a thread
    ROUTES: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/health"): "health", ("GET", "/metrics"): "metrics", ("GET", "/version"): "version",
        ("GET", "/v1/models"): "models", ("POST", "/v1/completions"): "completions",
        ("POST", "/v1/chat/completions"): "chat", ("POST", "/invocations"): "invocations",
        ("POST", "/tokenize"): "tokenize", ("POST", "/detokenize"): "detokenize",
    }

    def do_GET(self) -> None:
        """Serve a GET."""
        self.dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self.dispatch("POST")

    def do_PUT(self) -> None:
        """Answer 405/404."""
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        """Answer 405/404."""
        self.dispatch("DELETE")

    @property
    def demo(self) -> DemoHTTPServer:
        """The server, typed."""
        return cast(DemoHTTPServer, self.server)

    # -- plumbing

    def dispatch(self, method: str) -> None:
        """Read the body, check auth, route; turn failures into JSON errors."""
        path = urlsplit(self.path).path
        self.streaming = False
        try:
            raw = self.read_body()
            if self.is_protected(path) and not self.authorized():
                raise ApiError(HTTPStatus.UNAUTHORIZED, "Incorrect or missing API key; send "
                               "'Authorization: Bearer <key>'.")
            getattr(self, self.route(method, path))(raw)
        except ApiError as exc:
            self.send_json(exc.status, exc.body())
        except OSError:
            self.close_connection = True  # the client went away mid-response
        except Exception:
            log(f"unhandled error on {method} {path}:\n{traceback.format_exc()}", "ERROR", sys.stderr)
            self.close_connection = True
            if not self.streaming:
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                               ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error").body())

    def route(self, method: str, path: str) -> str:
        """The handler method name for (method, path), or a 404/405 `ApiError`."""
        name = self.ROUTES.get((method, path))
        if name is not None:
            return name
        if any(known == path for _, known in self.ROUTES):
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        raise ApiError(HTTPStatus.NOT_FOUND, f"no route for {path}")

    def read_body(self) -> bytes:
        """The request body by Content-Length (bounded); chunked uploads are refused."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length (chunked bodies unsupported)")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.BAD_REQUEST,
                           f"Content-Length must be an integer between 0 and {MAX_BODY_BYTES}")
        return self.rfile.read(length) if length else b""

    @staticmethod
    def is_protected(path: str) -> bool:
        """Paths that need the bearer key (stricter than vLLM, which leaves the last three open)."""
        return path == "/v1" or path.startswith("/v1/") or path in PROTECTED_PATHS

    def authorized(self) -> bool:
        """True when no key is configured or the bearer token matches (constant-time)."""
        key = self.demo.config.api_key
        if key is None:
            return True
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())

    def send_bytes(self, status: HTTPStatus, body: bytes, content_type: str | None) -> None:
        """Send a complete response with Content-Length."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        """Send a JSON document."""
        self.send_bytes(status, json.dumps(document).encode("utf-8"), "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors raised by the base class (bad request line, 501...) as JSON too."""
        status = HTTPStatus(code)
        self.close_connection = True
        self.send_json(status, ApiError(status, message or status.phrase).body())

    def start_events(self) -> None:
        """Begin a chunked `text/event-stream` response."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.streaming = True

    def event(self, payload: dict[str, Any] | str) -> None:
        """Send one `data: ...` server-sent event as one HTTP chunk."""
        text = payload if isinstance(payload, str) else json.dumps(payload)
        data = f"data: {text}\n\n".encode()
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def end_events(self) -> None:
        """Terminate the chunked body."""
        self.wfile.write(b"0\r\n\r\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One uvicorn-style access line per response; the request line carries no headers."""
        try:
            status = f"{int(code)} {HTTPStatus(int(code)).phrase}"
        except ValueError:
            status = str(code)
        host, port = self.client_address[:2]
        print(f'INFO:     {host}:{port} - "{self.requestline.translate(CONTROL_CHARS)}" {status}', flush=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Base-class diagnostics, in the demo's log format."""
        log((format % args).translate(CONTROL_CHARS), "WARNING")

    # -- endpoints (named in ROUTES; each takes the raw body)

    def health(self, _raw: bytes) -> None:
        """200 with an empty body, like vLLM."""
        self.send_bytes(HTTPStatus.OK, b"", None)

    def metrics(self, _raw: bytes) -> None:
        """Prometheus text exposition."""
        self.send_bytes(HTTPStatus.OK, generate_latest(self.demo.registry), CONTENT_TYPE_LATEST)

    def version(self, _raw: bytes) -> None:
        """The demo's version string."""
        self.send_json(HTTPStatus.OK, {"version": VERSION})

    def models(self, _raw: bytes) -> None:
        """The served names as OpenAI model cards."""
        config, created = self.demo.config, int(time.time())
        cards = [{"id": name, "object": "model", "created": created, "owned_by": "runner-demo",
                  "root": config.model, "parent": None, "max_model_len": config.engine.max_model_len,
                  "description": DESCRIPTION} for name in config.served_names]
        self.send_json(HTTPStatus.OK, {"object": "list", "data": cards})

    def chat(self, raw: bytes) -> None:
        """`POST /v1/chat/completions`."""
        self.complete(self.parse("chat", json_object(raw)))

    def completions(self, raw: bytes) -> None:
        """`POST /v1/completions`."""
        self.complete(self.parse("text", json_object(raw)))

    def invocations(self, raw: bytes) -> None:
        """SageMaker-style `POST /invocations`: chat if the body has `messages`, else completions."""
        body = json_object(raw)
        if "messages" not in body and "prompt" not in body:
            raise ApiError(HTTPStatus.BAD_REQUEST, "an /invocations body needs 'messages' or 'prompt'")
        kind = "chat" if "messages" in body else "text"
        self.complete(self.parse(kind, body))

    def tokenize(self, raw: bytes) -> None:
        """Word ids of a prompt or of chat messages."""
        ids = self.demo.engine.model.token_ids(plain_prompt(json_object(raw)))
        limit = self.demo.config.engine.max_model_len
        self.send_json(HTTPStatus.OK, {"count": len(ids), "max_model_len": limit, "tokens": ids,
                                       "token_strs": None})

    def detokenize(self, raw: bytes) -> None:
        """Words for a list of ids from `/tokenize`."""
        ids = json_object(raw).get("tokens")
        size = len(self.demo.engine.model.vocab)
        if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= size for i in ids):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"'tokens' must be a list of ids in 0..{size}",
                           param="tokens")
        self.send_json(HTTPStatus.OK, {"prompt": self.demo.engine.model.detokenize(ids)})

    # -- generation

    def parse(self, kind: str, body: dict[str, Any]) -> CompletionRequest:
        """Validate a completion body against this server's names and context length."""
        config = self.demo.config
        return parse_completion(kind, body, config.served_names, config.engine.max_model_len)

    def complete(self, request: CompletionRequest) -> None:
        """Run one completion, streamed or whole."""
        if request.stream:
            self.stream(request)
            return
        context = ResponseContext.for_request(request)
        with self.demo.engine.admit(request) as run:
            words = list(run.tokens())
        choice = context.choice(" ".join(words), run.generation.finish_reason, streaming=False)
        self.send_json(HTTPStatus.OK, context.envelope([choice], False, usage_of(request, len(words))))

    def stream(self, request: CompletionRequest) -> None:
        """Server-sent events: (chat: a role chunk), one chunk per word, a finish chunk, [usage], [DONE]."""
        context = ResponseContext.for_request(request)
        self.start_events()
        with self.demo.engine.admit(request) as run:
            if request.kind == "chat":
                first = context.choice("", None, streaming=True)
                first["delta"] = {"role": "assistant", "content": ""}
                self.event(context.envelope([first], True))
            for index, word in enumerate(run.tokens()):
                piece = word if index == 0 else f" {word}"
                self.event(context.envelope([context.choice(piece, None, streaming=True)], True))
            finish = context.choice(None, run.generation.finish_reason, streaming=True)
            self.event(context.envelope([finish], True))
        if request.include_usage:
            self.event(context.envelope([], True, usage_of(request, run.emitted)))
        self.event("[DONE]")
        self.end_events()


# ---------------------------------------------------------------------------------------------- main


def announce(config: ServerConfig, port: int) -> None:
    """The startup lines; runner's progress matching looks for 'Starting vLLM API server on'."""
    if config.api_key is None:
        log("no API key configured (--api-key-file, VLLM_API_KEY or API_KEY): /v1, /invocations, "
            "/tokenize and /detokenize are open to anyone who can reach the port", "WARNING", sys.stderr)
    log(f"runner demo server {VERSION}: {DESCRIPTION}")
    log(f"model={config.model!r} served_model_name={list(config.served_names)} "
        f"token_delay_ms={config.engine.token_delay_s * 1000:g} max_num_seqs={config.engine.max_num_seqs}")
    log(f"Starting vLLM API server on http://{config.host}:{port} (runner demo workload, not vLLM)")
    print(f"INFO:     Started server process [{os.getpid()}]", flush=True)
    print("INFO:     Waiting for application startup.", flush=True)
    print("INFO:     Application startup complete.", flush=True)


def drop_created_series() -> None:
    """vLLM's /metrics has no `_created` series; drop them too (needs prometheus_client >= 0.17)."""
    disable = getattr(prometheus_client, "disable_created_metrics", None)
    if disable is not None:
        disable()


def serve(config: ServerConfig) -> int:
    """Serve until SIGTERM or SIGINT, then stop accepting and return 0."""
    drop_created_series()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    try:
        server = DemoHTTPServer(config)
    except OSError as exc:
        log(f"cannot listen on {config.host}:{config.port}: {exc}", "ERROR", sys.stderr)
        return 1
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    worker.start()
    announce(config, server.server_address[1])
    # Wake up periodically: if the kernel hands the signal to a worker thread, the main thread's untimed
    # wait would never be interrupted and the Python-level handler would not run.
    while not stop.wait(0.2):
        pass
    print("INFO:     Shutting down", flush=True)
    server.shutdown()
    server.server_close()
    print("INFO:     Application shutdown complete.", flush=True)
    print(f"INFO:     Finished server process [{os.getpid()}]", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python3 server.py [--host H] [--port P] [--model M] ...`."""
    return serve(parse_config(argv))


if __name__ == "__main__":
    sys.exit(main())
