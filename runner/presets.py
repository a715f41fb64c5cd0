"""VESSL resource presets (`gpu-l4-small`, `cpu-medium`, `v1.l4-1.mem-42`) → CPU, memory and GPUs.

VESSL resolves a preset on its cluster; locally we need numbers for `docker run`. The built-in
table follows VESSL's naming (`<cpu|gpu>-<device>-<size>[-spot]`; `-spot` changes the price, not
the limits). A user's `RUNNER_HOME/presets.yaml` adds or overrides entries:

    gpu-l4-small: {cpu: 6, memory: 42Gi, gpus: 1, gpu_type: L4}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.manifest.units import parse_cpu, parse_memory

GiB = 1 << 30


@dataclass(frozen=True)
class Preset:
    name: str
    cpu: float | None
    memory_bytes: int | None
    gpus: int = 0
    gpu_type: str | None = None


_SIZES = {"small": 1, "medium": 2, "large": 4, "xlarge": 8}
_CPU_SIZES = {"small": (2, 4), "medium": (4, 8), "large": (8, 16), "xlarge": (16, 32)}  # cores, GiB
# per GPU: (cores, GiB of memory) on VESSL-like nodes
_GPU_SHAPES = {
    "l4": ("L4", 6, 42), "t4": ("T4", 4, 16), "a10": ("A10", 6, 42), "a10g": ("A10G", 6, 42),
    "v100": ("V100", 6, 52), "a100": ("A100", 12, 85), "a100-80g": ("A100-80G", 12, 170),
    "h100": ("H100", 16, 200), "h100-80g": ("H100-80G", 16, 200), "h200": ("H200", 16, 240),
}
_NAMED = re.compile(r"^(cpu|gpu)-(?:(.+)-)?(small|medium|large|xlarge)$")
_V1 = re.compile(r"^v1\.([a-z0-9-]+?)-(\d+)\.mem-(\d+)$")
_GPU_N = re.compile(r"^gpu-(\d+)$")


def builtin_preset(name: str) -> Preset | None:
    """Interpret a VESSL preset name; None when the name follows no known pattern."""
    base = name.removesuffix("-spot")
    match = _NAMED.match(base)
    if match:
        family, device, size = match.groups()
        if family == "cpu" and device is None:
            cores, gib = _CPU_SIZES[size]
            return Preset(name, cores, gib * GiB)
        shape = _GPU_SHAPES.get(device or "")
        if family == "gpu" and shape is not None:
            count = _SIZES[size]
            gpu_type, cores, gib = shape
            return Preset(name, cores * count, gib * count * GiB, count, gpu_type)
    match = _V1.match(base)
    if match:
        device, count, gib = match.group(1), int(match.group(2)), int(match.group(3))
        if device == "cpu":
            return Preset(name, count, gib * GiB)
        shape = _GPU_SHAPES.get(device)
        return Preset(name, None, gib * GiB, count, shape[0] if shape else device.upper())
    match = _GPU_N.match(base)
    if match:
        return Preset(name, None, None, int(match.group(1)))
    return None


class PresetTable:
    """Built-in presets plus the user's overrides file."""

    def __init__(self, overrides: dict[str, Preset] | None = None) -> None:
        self._overrides = overrides or {}

    @classmethod
    def load(cls, path: Path) -> PresetTable:
        if not path.is_file():
            return cls()
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")[: 256 * 1024]) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of preset name → {{cpu, memory, gpus, gpu_type}}")
        return cls({str(name): _preset_from(str(name), spec, path) for name, spec in data.items()})

    def lookup(self, name: str) -> Preset | None:
        return self._overrides.get(name) or builtin_preset(name)


def _preset_from(name: str, spec: Any, path: Path) -> Preset:
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: preset {name!r} must be a mapping")
    try:
        return Preset(
            name,
            parse_cpu(spec["cpu"]) if spec.get("cpu") is not None else None,
            parse_memory(spec["memory"]) if spec.get("memory") is not None else None,
            int(spec.get("gpus", 0)),
            spec.get("gpu_type"),
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: preset {name!r}: {exc}") from None
