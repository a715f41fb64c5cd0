"""A run as JSON for `--json` outputs (list, create, terminate, describe)."""

from __future__ import annotations

from typing import Any

from runner.store import RunRecord


def run_json(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "reason": record.reason,
        "exit_code": record.exit_code,
        "type": record.run_type,
        "created": record.created_at,
        "endpoints": {e["name"]: e.get("url") for e in record.endpoints},
        "ready": bool(record.ready_at),
    }
