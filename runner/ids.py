"""Identifiers runner mints: run ids and store ids."""

from __future__ import annotations

import secrets
import uuid

RUN_ID_BYTES = 6  # 12 hex characters: readable, and unique enough for one machine's runs


def new_run_id() -> str:
    return secrets.token_hex(RUN_ID_BYTES)


def new_store_id() -> str:
    return str(uuid.uuid4())
