"""Read side: which versions are complete, and resolving a reference to one version.

A version is complete when `versions/<n>/MANIFEST.json` exists and no `REMOVED` tombstone does:
the manifest is written last in staging and the whole dir is renamed in, so nothing half-built
is ever visible under `versions/`. Resolution reads LATEST once and never trusts it blindly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from runner.artifacts.contents import ContentManifest
from runner.artifacts.errors import ArtifactCorruptError
from runner.artifacts.latest import read_latest
from runner.artifacts.layout import FILES_NAME, MANIFEST_NAME, TOMBSTONE_NAME, ArtifactLayout
from runner.artifacts.refs import ArtifactRef


@dataclass(frozen=True)
class VersionHandle:
    """One complete, immutable version. `warnings` explains any fallback taken while resolving."""

    ref: ArtifactRef
    path: Path
    warnings: tuple[str, ...] = ()

    @property
    def number(self) -> int:
        return int(self.ref.version or 0)

    @property
    def files_dir(self) -> Path:
        return self.path / FILES_NAME

    @functools.cached_property
    def manifest(self) -> ContentManifest:
        manifest = ContentManifest.from_bytes((self.path / MANIFEST_NAME).read_bytes())
        if manifest.ref != self.ref:
            raise ArtifactCorruptError(f"{self.path}/{MANIFEST_NAME} describes {manifest.ref}, not {self.ref}")
        return manifest


def is_complete(layout: ArtifactLayout, number: int) -> bool:
    directory = layout.version_dir(number)
    return (directory / MANIFEST_NAME).is_file() and not (directory / TOMBSTONE_NAME).exists()


def complete_versions(layout: ArtifactLayout) -> list[int]:
    return [number for number in layout.version_numbers() if is_complete(layout, number)]


def handle(layout: ArtifactLayout, number: int, warnings: tuple[str, ...] = ()) -> VersionHandle:
    ref = ArtifactRef(layout.kind, layout.name, number)
    return VersionHandle(ref, layout.version_dir(number), warnings)


def resolve_version(layout: ArtifactLayout, version: int | None) -> VersionHandle | None:
    """A pinned version if complete; else what LATEST names, falling back to the highest complete one."""
    if version is not None:
        return handle(layout, version) if is_complete(layout, version) else None
    latest = read_latest(layout)
    if latest is not None and is_complete(layout, latest):
        return handle(layout, latest)
    complete = complete_versions(layout)
    if not complete:
        return None
    if latest is None and not layout.latest_path.exists():
        why = "LATEST is missing"
    elif latest is None:
        why = "LATEST is unreadable"
    else:
        why = f"LATEST names version {latest}, which is missing or incomplete"
    chosen = complete[-1]
    return handle(layout, chosen, (f"{layout.kind} {layout.name}: {why}; using version {chosen}",))
