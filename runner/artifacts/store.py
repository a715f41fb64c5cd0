"""ArtifactStore: the one object the engine and CLI use to publish, resolve, export and tidy artifacts.

It owns no state beyond the root path (the caller passes `RUNNER_HOME/artifacts`) and a hasher;
every operation is safe against concurrent runner processes and against a crash at any point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.artifacts.contents import FileHasher, verify_tree
from runner.artifacts.errors import ArtifactCorruptError
from runner.artifacts.exporting import export_version
from runner.artifacts.layout import ArtifactLayout
from runner.artifacts.maintenance import gc_staging, list_artifacts, remove_artifact, remove_version
from runner.artifacts.overlay import merge_trees
from runner.artifacts.publish import PublishedVersion, PublishRequest, publish
from runner.artifacts.refs import ArtifactRef, Kind
from runner.artifacts.staging import PlannedEntry, ProgressFn, plan_merge, plan_walk
from runner.artifacts.versions import VersionHandle, complete_versions, handle, resolve_version
from runner.errors import ExportFailedError, NotFoundError, RunnerError, UsageError

_Planner = Callable[[], list[PlannedEntry]]


@dataclass(frozen=True)
class ArtifactStore:
    """Immutable, numbered artifact versions under `root` (see layout.py for the tree)."""

    root: Path
    hasher: FileHasher = field(default_factory=FileHasher, compare=False)

    def layout(self, kind: Kind, name: str) -> ArtifactLayout:
        return ArtifactLayout(self.root, kind, name)

    # -- write side ---------------------------------------------------------------------------

    def publish_tree(
        self,
        kind: Kind,
        name: str,
        *,
        lower: VersionHandle | None,
        upper: Path,
        run_id: str | None,
        on_progress: ProgressFn | None = None,
    ) -> PublishedVersion:
        """Publish `lower` (an imported version, or None) merged with a stopped run's overlay `upper`.

        Files are hardlinked (both sources are never written again), and hashes of files that
        come unchanged from `lower` are taken from its manifest: cost follows the file count
        and the bytes the run changed, not the size of the tree.
        """
        layout = self.layout(kind, name)
        if not upper.is_dir():
            raise ExportFailedError(f"export source {upper} is not a directory", hint="nothing to export")

        def plan() -> list[PlannedEntry]:
            lower_files = lower.files_dir if lower is not None else None
            return plan_merge(merge_trees(lower_files, upper), lower.manifest if lower else None)

        return self._publish(layout, plan, run_id, on_progress)

    def publish_copy(
        self,
        kind: Kind,
        name: str,
        source_dir: Path,
        *,
        run_id: str | None = None,
        on_progress: ProgressFn | None = None,
    ) -> PublishedVersion:
        """Seed a version from a user directory: bytes are copied (reflinked where possible),
        relative symlinks are kept byte for byte, special files and escaping links are refused."""
        if not source_dir.is_dir():
            raise NotFoundError(f"{source_dir} is not a directory", hint="pass the directory to import")
        layout = self.layout(kind, name)
        return self._publish(layout, lambda: plan_walk(source_dir, linkable=False), run_id, on_progress)

    def _publish(
        self, layout: ArtifactLayout, plan: _Planner, run_id: str | None, on_progress: ProgressFn | None
    ) -> PublishedVersion:
        what = f"{layout.kind} {layout.name}"
        try:
            return publish(PublishRequest(layout, plan(), run_id, self.hasher, on_progress))
        except RunnerError:
            raise
        except OSError as exc:
            raise ExportFailedError(
                f"publishing a new version of {what} failed: {exc}",
                hint="earlier versions are intact; fix the cause and export again",
            ) from exc

    def export_to(self, ref: ArtifactRef, dest_dir: Path) -> VersionHandle:
        """Copy the version `ref` resolves to into `dest_dir` (absent or empty); links stay links."""
        version = self._require(ref)
        export_version(version, dest_dir)
        return version

    def remove(self, kind: Kind, name: str, version: int | None) -> None:
        """Remove one version (LATEST moves back to the previous complete one) or the whole artifact.

        Version numbers are never reused: a removed version leaves a tombstone.
        """
        layout = self.layout(kind, name)
        if version is None:
            if not layout.versions_dir.is_dir():
                raise NotFoundError(f"no {kind} named {name!r}", hint="see `runner artifact list`")
            remove_artifact(layout)
            return
        try:
            remove_version(layout, version)
        except FileNotFoundError:
            raise NotFoundError(
                f"{kind} {name!r} has no version {version}", hint="see `runner artifact list`"
            ) from None

    def gc_staging(self, older_than_s: float) -> int:
        """Remove abandoned staging dirs and LATEST temp files older than the grace; returns the count."""
        if older_than_s < 0:
            raise UsageError("the gc grace period cannot be negative")
        return gc_staging(self.root, older_than_s)

    # -- read side ----------------------------------------------------------------------------

    def resolve(self, ref: ArtifactRef) -> VersionHandle | None:
        """The pinned version, or the one LATEST names (falling back with a warning); None if none."""
        version = resolve_version(self.layout(ref.kind, ref.name), ref.version)
        if version is not None:
            _ = version.manifest  # parse now: a handle always carries a readable manifest
        return version

    def verify(self, ref: ArtifactRef, deep: bool = False) -> list[str]:
        """Problems of the resolved version (empty = ok); `deep` also rehashes every file."""
        version = self._require(ref)
        try:
            manifest = version.manifest
        except ArtifactCorruptError as exc:
            return [exc.message]
        return verify_tree(version.files_dir, manifest, deep=deep, hasher=self.hasher)

    def list_artifacts(self) -> list[ArtifactRef]:
        return list_artifacts(self.root)

    def versions(self, kind: Kind, name: str) -> list[VersionHandle]:
        """Complete versions, oldest first (manifests load lazily)."""
        layout = self.layout(kind, name)
        return [handle(layout, number) for number in complete_versions(layout)]

    def _require(self, ref: ArtifactRef) -> VersionHandle:
        version = self.resolve(ref)
        if version is None:
            which = "any complete version" if ref.version is None else f"version {ref.version}"
            raise NotFoundError(f"{ref.kind} {ref.name!r} has no {which}", hint="see `runner artifact list`")
        return version
