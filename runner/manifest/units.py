"""Durations (`10s`, `24h`, `120m`), memory sizes (`16Gi`, `512Mi`, `8g`) and CPU amounts (`4`, `500m`).

Each parser takes what a manifest may hold (string or number) and raises `ValueError` with a
message that says which forms are accepted; callers turn it into a located problem.
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_COMPOUND_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_COMPOUND_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_MEMORY_UNITS = {
    "": 1, "b": 1,
    "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40,  # Kubernetes binary
    "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,  # docker's lowercase forms
    "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40,
}
_MEMORY_DECIMAL = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}  # Kubernetes decimal

MEMORY_FORMS = "a byte count or a size like 512Mi, 16Gi, 8g"
DURATION_FORMS = "a number of seconds or a duration like 500ms, 10s, 5m, 24h, 1h30m"


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration; bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_FORMS}")
    if isinstance(value, (int, float)):
        if value < 0 or not math.isfinite(value):
            raise ValueError("a duration cannot be negative or infinite")
        return float(value)
    text = value.strip().lower()
    match = _DURATION.match(text)
    if match:
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if _COMPOUND_DURATION.match(text):
        return sum(float(n) * _DURATION_UNITS[u] for n, u in _COMPOUND_PART.findall(text))
    raise ValueError(f"{value!r} is not a duration; expected {DURATION_FORMS}")


def parse_memory(value: str | int | float) -> int:
    """Bytes in a memory size."""
    if isinstance(value, bool):
        raise ValueError(f"expected {MEMORY_FORMS}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("a memory size must be positive")
        return int(value)
    match = _MEMORY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a memory size; expected {MEMORY_FORMS}")
    number, unit = float(match.group(1)), match.group(2)
    factor = _MEMORY_DECIMAL.get(unit) or _MEMORY_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown unit {unit!r} in {value!r}; expected {MEMORY_FORMS}")
    size = int(number * factor)
    if size <= 0:
        raise ValueError("a memory size must be positive")
    return size


def parse_cpu(value: str | int | float) -> float:
    """Cores: `4`, `0.5`, `"2"`, `"500m"` (millicores, as in Kubernetes)."""
    if isinstance(value, bool):
        raise ValueError("expected a number of cores like 2, 0.5 or 500m")
    if isinstance(value, str):
        text = value.strip()
        try:
            cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a CPU amount; expected cores like 2, 0.5 or 500m") from None
    else:
        cores = float(value)
    if cores <= 0 or not math.isfinite(cores):
        raise ValueError("a CPU amount must be positive")
    return cores


def format_bytes(size: int) -> str:
    for unit, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size >= factor:
            amount = size / factor
            return f"{amount:.0f}{unit}" if amount == int(amount) else f"{amount:.1f}{unit}"
    return f"{size}B"


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
