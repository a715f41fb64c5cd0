"""The manifest layer: VESSL-Run-style YAML in, a typed `Manifest` (or every located problem) out.

It imports nothing from the rest of runner except the error root; everything above it (plan,
engine, CLI) consumes `LoadedManifest`. The names below are loaded on first use, so importing a
light submodule (e.g. `runner.manifest.secretbag` from `runner list`) does not load the parser.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Manifest": "runner.manifest.model",
    "LoadedManifest": "runner.manifest.pipeline",
    "ManifestRequest": "runner.manifest.pipeline",
    "load_manifest": "runner.manifest.pipeline",
    "ManifestError": "runner.manifest.problems",
    "Problem": "runner.manifest.problems",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.manifest' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
