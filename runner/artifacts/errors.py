"""Errors raised by the artifact store, each naming the artifact, version or path involved.

They subclass the project-wide roots in `runner.errors` so `cli.main` maps them to exit codes
without knowing this package: bad names are usage errors (2), hostile trees and archives are
policy refusals (4), publish failures are export failures (1).
"""

from __future__ import annotations

from runner.errors import ExportFailedError, PolicyError, RunnerError, UsageError


class ArtifactNameError(UsageError):
    """An artifact name or reference does not follow the naming rules."""


class UnsafeEntryError(PolicyError):
    """A tree entry or archive member was refused: it could escape its root or is a special file.

    `path` is the offending relative path (or member name) exactly as found.
    """

    def __init__(self, path: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"refused {path!r}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class ArchiveLimitError(PolicyError):
    """An archive exceeded the member-count or total-size cap before extraction finished."""


class OverlayMetadataError(ExportFailedError):
    """The overlay upper dir uses redirect or metacopy entries, which a metadata-only export cannot merge.

    The caller falls back to exporting the merged view (for example a tar of the mounted path).
    """

    def __init__(self, path: str, xattr: str) -> None:
        super().__init__(
            f"overlay upper entry {path!r} carries {xattr}; a metadata-only export cannot merge it",
            hint="mount with redirect_dir=off,metacopy=off, or export the merged view by copying",
        )
        self.path = path
        self.xattr = xattr


class ArtifactCorruptError(RunnerError):
    """A stored version does not match its content manifest."""
