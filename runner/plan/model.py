"""The plan of a run: everything `create` will do, decided before it does any of it.

A `RunPlan` is pure data built from a `Manifest` plus facts about the host. `create --dry-run`
prints it; the engine executes it phase by phase; its `spec_hash` labels what it creates. No
secret value is ever part of a plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner.backends.spec import ContainerSpec
from runner.entrypoint import EntrypointSpec
from runner.manifest.model import ArtifactKind, GitSource, PortType


@dataclass(frozen=True)
class OverlayView:
    """A copy-on-write view of a read-only directory, as a Docker `local` overlay volume."""

    volume_name: str
    lower_dir: Path  # read-only content (an artifact version, a model snapshot, or an empty dir)
    upper_dir: Path  # the run's writes
    work_dir: Path  # overlayfs scratch, same filesystem as upper_dir


@dataclass(frozen=True)
class GitImport:
    target: str
    source: GitSource
    host_dir: Path  # cloned here, bind-mounted at target


@dataclass(frozen=True)
class ArtifactImport:
    target: str
    kind: ArtifactKind
    name: str
    version: int | None  # the version resolved at plan time; None = the artifact does not exist yet
    view: OverlayView


@dataclass(frozen=True)
class HuggingFaceImport:
    target: str
    repo_id: str
    repo_type: Literal["model", "dataset"]
    revision: str | None
    view: OverlayView  # lower_dir is filled with links to the shared cache's blobs after download


ImportStep = GitImport | ArtifactImport | HuggingFaceImport


@dataclass(frozen=True)
class ArtifactBase:
    """The version imported at an export's path: the export is that version plus the run's changes.

    It may be another artifact than the export's (start from a base model, publish under a new name).
    """

    kind: ArtifactKind
    name: str
    version: int


@dataclass(frozen=True)
class ArtifactExport:
    target: str
    kind: ArtifactKind
    name: str
    view: OverlayView  # the overlay whose upper dir holds the run's changes
    base: ArtifactBase | None  # the imported version the changes apply to (cache pattern), if any


@dataclass(frozen=True)
class BuildPlan:
    context_dir: Path | None  # a Docker build context; None for a setup-only build
    dockerfile: str | None
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    tag: str | None = None  # user-chosen tag; default: a content-hash tag
    base_image: str | None = None  # for setup builds
    setup: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImagePlan:
    ref: str | None  # what to run (None until a build produces it)
    credential_name: str | None = None
    build: BuildPlan | None = None


@dataclass(frozen=True)
class Endpoint:
    name: str
    container_port: int
    type: PortType
    host_ip: str
    host_port: int | None  # planned; the engine reports the actual binding
    health_path: str


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    run_name: str
    run_type: Literal["batch", "interactive"]
    spec_hash: str
    image: ImagePlan
    container: ContainerSpec  # image filled in by the engine when the plan builds one
    entrypoint: EntrypointSpec | None  # None: the image's own command runs unwrapped
    imports: tuple[ImportStep, ...] = ()
    exports: tuple[ArtifactExport, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    gpu_count: int = 0
    max_runtime_s: float | None = None
    secret_env: tuple[str, ...] = ()
    run_dir: Path = field(default_factory=Path)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def needs_gpu(self) -> bool:
        return self.gpu_count != 0

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view of the plan (for --dry-run and the run directory). No secret values."""
        from runner.plan.render import plan_to_json

        return plan_to_json(self)
