"""The manifest layer: VESSL-Run-style YAML in, a typed `Manifest` (or every located problem) out.

It imports nothing from the rest of runner except the error root; everything above it (plan,
engine, CLI) consumes `LoadedManifest`.
"""

from runner.manifest.model import Manifest
from runner.manifest.pipeline import LoadedManifest, ManifestRequest, load_manifest
from runner.manifest.problems import ManifestError, Problem

__all__ = ["LoadedManifest", "Manifest", "ManifestError", "ManifestRequest", "Problem", "load_manifest"]
