"""Artifact references: what names are allowed and how manifest URIs map onto (kind, name, version).

A name is 1-4 `/`-separated components, each `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`. Components
become nested directories in the store, so the rules also block path traversal through names
and keep an artifact's own bookkeeping (`versions/`, `LATEST`) from colliding with a nested name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from runner.artifacts.errors import ArtifactNameError

Kind = Literal["artifact", "model", "dataset"]
KINDS: tuple[Kind, ...] = get_args(Kind)

MAX_COMPONENTS = 4
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"[0-9]{1,9}")
# Names that would land on the store's own files inside a parent artifact's directory.
_RESERVED = ("versions", "latest")
_NAME_HINT = (
    "use 1-4 components separated by '/', each starting with a letter or digit and containing only "
    "letters, digits, '.', '_' or '-' (at most 128 characters), e.g. 'my-org/my-project/hf-cache'"
)


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact (version None = whatever LATEST names) or one pinned version of it."""

    kind: Kind
    name: str
    version: int | None = None

    def __post_init__(self) -> None:
        check_kind(self.kind)
        check_name(self.name)
        if self.version is not None and (isinstance(self.version, bool) or self.version < 1):
            raise ArtifactNameError(f"artifact version must be a positive integer, got {self.version!r}")

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.name.split("/"))

    def pinned(self, version: int) -> ArtifactRef:
        return ArtifactRef(self.kind, self.name, version)

    def __str__(self) -> str:
        base = f"{self.kind}:{self.name}"
        return base if self.version is None else f"{base}:{self.version}"


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ArtifactNameError(f"unknown artifact kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    return kind  # narrowed to Kind by the membership test above


def check_name(name: str) -> str:
    """Return `name` if it is a valid artifact name; raise ArtifactNameError naming the bad part."""
    if not isinstance(name, str) or not name:
        raise ArtifactNameError("artifact name is empty", hint=_NAME_HINT)
    parts = name.split("/")
    if len(parts) > MAX_COMPONENTS:
        raise ArtifactNameError(
            f"artifact name {name!r} has {len(parts)} components (at most {MAX_COMPONENTS})", hint=_NAME_HINT
        )
    for part in parts:
        if not _COMPONENT.fullmatch(part):
            raise ArtifactNameError(f"artifact name {name!r}: invalid component {part!r}", hint=_NAME_HINT)
        lowered = part.lower()
        if lowered in _RESERVED or lowered.startswith("latest.tmp"):
            raise ArtifactNameError(
                f"artifact name {name!r}: component {part!r} is reserved by the store", hint=_NAME_HINT
            )
    return name


def _parse_version(text: str, whole: str) -> int:
    if not _VERSION.fullmatch(text) or int(text) < 1:
        raise ArtifactNameError(
            f"{whole!r}: version {text!r} is not a positive integer", hint="write NAME:N with N >= 1"
        )
    return int(text)


def parse_store_name(text: str, *, kind: Kind = "artifact") -> ArtifactRef:
    """Parse `NAME[:N]` as typed on the command line (`runner artifact import DIR NAME`)."""
    name, sep, version = text.partition(":")
    return ArtifactRef(kind, check_name(name), _parse_version(version, text) if sep else None)


def ref_from_uri(uri: str) -> ArtifactRef:
    """Map a manifest URI onto a store reference.

    `vessl-artifact://ORG/PROJECT/NAME`, `artifact://NAME[:N]`, `vessl-model://ORG/REPO[/N]`,
    `vessl-dataset://ORG/NAME`. A bare `vessl-artifact://` (auto-named) is the caller's business.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ArtifactNameError(f"{uri!r} is not an artifact URI", hint="expected SCHEME://NAME")
    if scheme == "artifact":
        return parse_store_name(rest, kind="artifact")
    if scheme == "vessl-artifact":
        return _exact_components(uri, rest, "artifact", 3, "vessl-artifact://ORG/PROJECT/NAME")
    if scheme == "vessl-dataset":
        return _exact_components(uri, rest, "dataset", 2, "vessl-dataset://ORG/NAME")
    if scheme == "vessl-model":
        return _model_ref(uri, rest)
    raise ArtifactNameError(
        f"{uri!r}: unknown artifact scheme {scheme!r}",
        hint="use artifact://, vessl-artifact://, vessl-model:// or vessl-dataset://",
    )


def _exact_components(uri: str, rest: str, kind: Kind, count: int, form: str) -> ArtifactRef:
    parts = rest.split("/")
    if len(parts) != count:
        raise ArtifactNameError(f"{uri!r} does not have the form {form}", hint=f"write {form}")
    return ArtifactRef(kind, _named(uri, rest))


def _model_ref(uri: str, rest: str) -> ArtifactRef:
    parts = rest.split("/")
    form = "vessl-model://ORG/REPO or vessl-model://ORG/REPO/N"
    if len(parts) not in (2, 3):
        raise ArtifactNameError(f"{uri!r} does not have the form {form}", hint=f"write {form}")
    version = _parse_version(parts[2], uri) if len(parts) == 3 else None
    return ArtifactRef("model", _named(uri, "/".join(parts[:2])), version)


def _named(uri: str, name: str) -> str:
    try:
        return check_name(name)
    except ArtifactNameError as exc:
        raise ArtifactNameError(f"{uri!r}: {exc.message}", hint=exc.hint) from None
