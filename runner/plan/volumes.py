"""Planning imports, mounts and exports: which host directory or volume appears at each container path.

- git → a per-run checkout, bind-mounted.
- artifact / model / dataset imports and hf:// models → an overlay volume over a read-only
  directory (the version, or the model snapshot), so imports cost no copying and the run's writes
  never touch what was imported.
- exports to artifacts → the overlay's upper dir is published as a new version when the run ends;
  the cache pattern (same path imported and exported) shares one overlay.
- volume:// → a named Docker volume; hostpath:// → a bind (sensitive host paths refused);
  nfs:// → a Docker NFS volume.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.backends.spec import Mount, VolumeSpec
from runner.manifest.model import (
    ArtifactDestination,
    ArtifactKind,
    ArtifactSource,
    Export,
    GitSource,
    HostPathSource,
    HuggingFaceSource,
    Manifest,
    NfsSource,
    ObjectStoreDestination,
    ObjectStoreSource,
    UnsupportedSource,
    Volume,
    VolumeDestination,
    VolumeSource,
)
from runner.manifest.problems import JsonPath, Problem
from runner.plan.model import (
    ArtifactBase,
    ArtifactExport,
    ArtifactImport,
    GitImport,
    HuggingFaceImport,
    ImportStep,
    OverlayView,
)

# Bind-mounting these (or anything inside them) hands the container the host: kernel views,
# system configuration and binaries, Docker's state.
NO_MOUNTS_INSIDE = (
    "/proc", "/sys", "/dev", "/etc", "/boot", "/root", "/usr", "/bin", "/sbin", "/lib", "/lib64",
    "/var/lib/docker", "/var/run/docker.sock", "/run/docker.sock",
)
# Bind-mounting a directory that contains one of these exposes it (so "/", "/var", "/run" are refused).
NO_MOUNTS_CONTAINING = ("/var/run/docker.sock", "/run/docker.sock", "/var/lib/docker", "/etc", "/root", "/boot",
                        "/usr", "/proc", "/sys", "/dev")


@dataclass(frozen=True)
class ResolvedArtifact:
    """An artifact version found in the local store at plan time."""

    version: int | None  # None: the artifact has no version yet
    files_dir: Path | None


ArtifactKey = tuple[ArtifactKind, str, "int | None"]


@dataclass(frozen=True)
class VolumeFacts:
    artifacts: Mapping[ArtifactKey, ResolvedArtifact] = field(default_factory=dict)
    runner_home: Path = Path("/nonexistent")
    allow_local_sources: bool = False
    allow_host_paths: tuple[str, ...] = ()


@dataclass
class VolumePlan:
    imports: list[ImportStep] = field(default_factory=list)
    exports: list[ArtifactExport] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    volumes: list[VolumeSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # expected situations worth saying (a first cache run)


class VolumePlanner:
    def __init__(self, run_id: str, run_dir: Path, facts: VolumeFacts) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.facts = facts
        self.plan = VolumePlan()
        self._overlays: dict[str, tuple[OverlayView, ArtifactBase | None]] = {}  # target → view, imported version

    def build(self, manifest: Manifest) -> VolumePlan:
        for volume in manifest.imports:
            self._import(volume)
        for volume in manifest.mounts:
            self._mount(volume)
        for export in manifest.exports:
            self._export(export)
        return self.plan

    # -- helpers --------------------------------------------------------------------------------
    def _refuse(self, path: JsonPath, message: str, hint: str | None = None, *, policy: bool = False) -> None:
        self.plan.problems.append(Problem(path, message, hint=hint, policy=policy))

    def _overlay(self, target: str, lower: Path | None) -> OverlayView:
        index = len(self.plan.volumes)
        base = self.run_dir / "volumes" / str(index)
        view = OverlayView(
            volume_name=f"runner-{self.run_id}-{index}",
            lower_dir=lower if lower is not None else base / "lower",
            upper_dir=base / "upper",
            work_dir=base / "work",
        )
        # redirect_dir/metacopy off: the upper dir then holds whole files and plain dirs, which export can link
        options = (f"lowerdir={view.lower_dir},upperdir={view.upper_dir},workdir={view.work_dir},"
                   "redirect_dir=off,metacopy=off")
        self.plan.volumes.append(VolumeSpec(view.volume_name, {"type": "overlay", "device": "overlay",
                                                               "o": options}))
        self.plan.mounts.append(Mount("volume", view.volume_name, target))
        return view

    # -- import ---------------------------------------------------------------------------------
    def _import(self, volume: Volume) -> None:
        path: JsonPath = ("import", volume.target)
        source = volume.source
        if isinstance(source, GitSource):
            self._git(volume.target, source, path)
        elif isinstance(source, HuggingFaceSource):
            view = self._overlay(volume.target, None)
            self.plan.imports.append(HuggingFaceImport(volume.target, source.repo_id, source.repo_type,
                                                       source.revision, view))
        elif isinstance(source, ArtifactSource):
            self._artifact_import(volume.target, source, path)
        elif isinstance(source, VolumeSource):
            self.plan.mounts.append(Mount("volume", source.name, volume.target))
        else:
            self._unsupported(source, path)

    def _git(self, target: str, source: GitSource, path: JsonPath) -> None:
        if source.url.is_local and not self.facts.allow_local_sources:
            self._refuse(path, f"local git source {source.url.display} is refused by default", policy=True,
                         hint="pass --allow-local-sources to import from this machine's file system")
            return
        slug = target.strip("/").replace("/", "-") or "root"
        host_dir = self.run_dir / "imports" / f"{len(self.plan.imports)}-{slug}"
        self.plan.imports.append(GitImport(target, source, host_dir))
        self.plan.mounts.append(Mount("bind", str(host_dir), target))

    def _artifact_import(self, target: str, source: ArtifactSource, path: JsonPath) -> None:
        if source.name is None:
            self._refuse(path, "a bare vessl-artifact:// import is filled by a previous pipeline step",
                         hint="name the artifact: vessl-artifact://ORG/PROJECT/NAME or artifact://NAME")
            return
        found = self.facts.artifacts.get((source.kind, source.name, source.version))
        if source.version is not None and (found is None or found.files_dir is None):
            self._refuse(path, f"{source.kind} {source.name} has no version {source.version}",
                         hint=f"see `runner artifact show {source.name}`")
            return
        version = found.version if found else None
        if version is None:
            self.plan.notes.append(f"{source.kind} {source.name} does not exist yet: {target} starts empty "
                                   "(expected on the first run of a cache)")
        view = self._overlay(target, found.files_dir if found else None)
        self._overlays[target] = (view, ArtifactBase(source.kind, source.name, version) if version else None)
        self.plan.imports.append(ArtifactImport(target, source.kind, source.name, version, view))

    def _unsupported(self, source: object, path: JsonPath) -> None:
        if isinstance(source, ObjectStoreSource):
            self._refuse(path, f"{source.scheme}:// sources are not supported by the local runner",
                         hint="download the data into an artifact (`runner artifact import DIR NAME`) and import that")
        elif isinstance(source, UnsupportedSource):
            self._refuse(path, f"{source.kind} volumes exist only on VESSL clusters",
                         hint="use hostpath://, nfs://, volume:// or an artifact")
        else:
            self._refuse(path, "this source cannot be used here")

    # -- mount ----------------------------------------------------------------------------------
    def _mount(self, volume: Volume) -> None:
        path: JsonPath = ("mount", volume.target)
        source = volume.source
        if isinstance(source, HostPathSource):
            if self._host_path_allowed(source.path, path):
                self.plan.mounts.append(Mount("bind", source.path, volume.target, source.readonly))
        elif isinstance(source, NfsSource):
            name = f"runner-{self.run_id}-nfs-{len(self.plan.volumes)}"
            mode = "ro" if source.readonly else "rw"
            self.plan.volumes.append(VolumeSpec(name, {"type": "nfs", "o": f"addr={source.server},{mode},nfsvers=4",
                                                       "device": f":{source.path}"}))
            self.plan.mounts.append(Mount("volume", name, volume.target, source.readonly))
        elif isinstance(source, VolumeSource):
            self.plan.mounts.append(Mount("volume", source.name, volume.target))
        elif isinstance(source, ArtifactSource) and source.name is not None:
            found = self.facts.artifacts.get((source.kind, source.name, source.version))
            if found is None or found.files_dir is None:
                self._refuse(path, f"{source.kind} {source.name} does not exist",
                             hint="see `runner artifact list`")
                return
            self.plan.mounts.append(Mount("bind", str(found.files_dir), volume.target, read_only=True))
        else:
            self._unsupported(source, path)

    def _host_path_allowed(self, raw: str, path: JsonPath) -> bool:
        real = os.path.realpath(raw)
        if any(_within(real, os.path.realpath(allowed)) for allowed in self.facts.allow_host_paths):
            return True
        home = os.path.realpath(self.facts.runner_home)
        for sensitive in (*NO_MOUNTS_INSIDE, home):
            if _within(real, sensitive):
                return self._refuse_host_path(raw, path, f"it is inside {sensitive}")
        for sensitive in (*NO_MOUNTS_CONTAINING, home):
            if _within(sensitive, real):
                return self._refuse_host_path(raw, path, f"it contains {sensitive}")
        if not os.path.exists(real):
            self._refuse(path, f"host path {raw} does not exist", hint="create it or fix the path")
            return False
        return True

    def _refuse_host_path(self, raw: str, path: JsonPath, why: str) -> bool:
        self._refuse(path, f"mounting host path {raw} is refused by policy: {why}", policy=True,
                     hint=f"pass --allow-host-path {raw} if you really mean it")
        return False

    # -- export ---------------------------------------------------------------------------------
    def _export(self, export: Export) -> None:
        path: JsonPath = ("export", export.target)
        destination = export.destination
        if isinstance(destination, VolumeDestination):
            if export.target in {step.target for step in self.plan.imports}:
                self._refuse(path, "a volume export cannot share its path with an import")
                return
            self.plan.mounts.append(Mount("volume", destination.name, export.target))
        elif isinstance(destination, ArtifactDestination):
            self._artifact_export(export.target, destination, path)
        elif isinstance(destination, ObjectStoreDestination):
            self._refuse(path, f"{destination.scheme}:// exports are not supported by the local runner",
                         hint="export to an artifact (artifact://NAME) and copy it with `runner artifact export`")

    def _artifact_export(self, target: str, destination: ArtifactDestination, path: JsonPath) -> None:
        name = destination.name or f"run-{self.run_id}/{target.strip('/').replace('/', '-') or 'root'}"
        shared = self._overlays.get(target)
        if shared is None and target in {step.target for step in self.plan.imports}:
            self._refuse(path, f"{target} is imported from git or Hugging Face and cannot also be exported",
                         hint="export a different directory (e.g. an output directory)")
            return
        view, base = shared if shared is not None else (self._overlay(target, None), None)
        self.plan.exports.append(ArtifactExport(target, destination.kind, name, view, base))


def _within(path: str, root: str) -> bool:
    """True when `path` is `root` or inside it (both absolute, normalised)."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root == "/" else root + "/")
