"""Readiness: a run is ready when every http port answers (any status below 500) and every tcp port accepts.

Polling runs every 20 ms for the first seconds (time-to-ready is measured against a plain `docker run`
+ 20 ms poll loop; probing a local port costs well under a millisecond), then backs off. Docker's port
proxy accepts connections before the server listens and then drops them, so only a real HTTP response
counts. The container is watched meanwhile: if it ends, waiting stops and the run is finalized with its
exit status.
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass
from typing import Any

from runner.engine.context import Engine
from runner.engine.events import Notice
from runner.engine.finalize import finalize
from runner.store import RunRecord

FIRST_INTERVAL_S = 0.02
FAST_POLLING_S = 3.0  # poll at FIRST_INTERVAL_S this long, then back off to MAX_INTERVAL_S
MAX_INTERVAL_S = 0.5
STATE_CHECK_S = 0.5
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ReadyResult:
    record: RunRecord
    ready: bool
    ended: bool  # the container ended while waiting
    timed_out: bool


def probe(endpoint: dict[str, Any]) -> bool:
    port = endpoint.get("host_port")
    if not port or endpoint.get("type") == "udp":
        return True
    host = endpoint.get("host_ip") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a comparison, not a bind
    if endpoint.get("type") != "http":
        try:
            with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False
    connection = http.client.HTTPConnection(host, int(port), timeout=PROBE_TIMEOUT_S)
    try:
        connection.request("GET", endpoint.get("health_path") or "/", headers={"User-Agent": "runner-readiness"})
        return connection.getresponse().status < 500
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_ready(engine: Engine, record: RunRecord, timeout_s: float | None) -> ReadyResult:
    store = engine.store(create=True)
    probed = [e for e in record.endpoints if e.get("type") in ("http", "tcp")]
    pending = [e for e in probed if e.get("host_port")]
    started = time.monotonic()
    # A port the engine reported no binding for: the container ended before it was inspected, so check
    # now instead of calling an unprobeable port ready.
    interval, last_state_check = FIRST_INTERVAL_S, started - (STATE_CHECK_S if len(pending) < len(probed) else 0)
    while True:
        pending = [endpoint for endpoint in pending if not probe(endpoint)]
        now = time.monotonic()
        if now - last_state_check >= STATE_CHECK_S:
            last_state_check = now
            state = engine.backend().inspect(record.container_id or record.container_name)
            if state is None or not state.running:
                return ReadyResult(finalize(engine, store.get(record.id), stop=False), False, True, False)
        if not pending:
            return ReadyResult(_mark_ready(engine, record), ready=True, ended=False, timed_out=False)
        if timeout_s is not None and now - started >= timeout_s:
            names = ", ".join(e["name"] for e in pending)
            engine.events(Notice(f"not ready after {timeout_s:g}s (waiting for {names}); the run keeps going",
                                 "warning"))
            return ReadyResult(store.get(record.id), ready=False, ended=False, timed_out=True)
        time.sleep(interval)
        if now - started >= FAST_POLLING_S:
            interval = min(MAX_INTERVAL_S, interval * 1.5)


def _mark_ready(engine: Engine, record: RunRecord) -> RunRecord:
    now = time.time()
    endpoints = [{**endpoint, "ready": True} for endpoint in record.endpoints]
    store = engine.store(create=True)
    store.merge_json(record.id, "phases", {"ready": {"start": record.started_at or now, "end": now}})
    updated = store.update(record.id, expect=("running", "idle"), ready_at=now, endpoints=endpoints)
    return updated or store.get(record.id)
