"""Local artifact store: immutable numbered versions, atomic publish, metadata-only import/export.

Public API (everything else in this package is an implementation detail):

- refs: `ArtifactRef`, `parse_store_name`, `ref_from_uri`
- store: `ArtifactStore` (publish_tree, publish_copy, export_to, resolve, verify, versions,
  list_artifacts, remove, gc_staging), `VersionHandle`, `PublishedVersion`
- contents: `ContentManifest`, `Entry`, `FileHasher`
- overlay: `merge_trees`, `MergedEntry`
- tarsafe: `safe_extract`, `ExtractSummary`
- errors: `ArtifactNameError`, `UnsafeEntryError`, `ArchiveLimitError`, `OverlayMetadataError`,
  `ArtifactCorruptError`
"""

from __future__ import annotations

from runner.artifacts.contents import ContentManifest, Entry, FileHasher
from runner.artifacts.errors import (
    ArchiveLimitError,
    ArtifactCorruptError,
    ArtifactNameError,
    OverlayMetadataError,
    UnsafeEntryError,
)
from runner.artifacts.overlay import MergedEntry, merge_trees
from runner.artifacts.publish import PublishedVersion
from runner.artifacts.refs import KINDS, ArtifactRef, Kind, parse_store_name, ref_from_uri
from runner.artifacts.staging import BuildStats
from runner.artifacts.store import ArtifactStore
from runner.artifacts.tarsafe import ExtractSummary, safe_extract
from runner.artifacts.versions import VersionHandle

__all__ = [
    "KINDS",
    "ArchiveLimitError",
    "ArtifactCorruptError",
    "ArtifactNameError",
    "ArtifactRef",
    "ArtifactStore",
    "BuildStats",
    "ContentManifest",
    "Entry",
    "ExtractSummary",
    "FileHasher",
    "Kind",
    "MergedEntry",
    "OverlayMetadataError",
    "PublishedVersion",
    "UnsafeEntryError",
    "VersionHandle",
    "merge_trees",
    "parse_store_name",
    "ref_from_uri",
    "safe_extract",
]
