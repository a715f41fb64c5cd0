"""`import`, `mount` and `export` entries → typed sources and destinations.

Each entry maps a container path to a URI string or a verbose map; every spelling in the VESSL
reference is accepted and collapses to one model type. Semantic problems (a bad git URL, a path
that escapes, an artifact name that would traverse the store) raise `VolumeError`, which the
builder turns into a located problem. Shapes were already checked by the schema.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from runner.manifest.giturl import GitUrlError, parse_git_url, validate_git_ref
from runner.manifest.model import (
    ArtifactDestination,
    ArtifactKind,
    ArtifactSource,
    Destination,
    GitSource,
    HostPathSource,
    HuggingFaceSource,
    NfsSource,
    ObjectStoreDestination,
    ObjectStoreSource,
    Source,
    UnsupportedSource,
    VolumeDestination,
    VolumeSource,
)
from runner.manifest.problems import JsonPath

# Container paths a run may not replace: the kernel's views, and runner's own delivery dirs.
RESERVED_TARGETS = ("/proc", "/sys", "/dev", "/run/secrets", "/run/runner")
MAX_NAME_COMPONENTS = 4
_NAME_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# An unfilled `{PLACEHOLDER}` (reported by resolution: a warning for validate, an error for create).
_UNFILLED = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_UNSUPPORTED_MOUNTS = ("cifs", "google_disk", "container_storage", "gcs_fuse", "block_storage")


class VolumeError(ValueError):
    """A semantic problem in one entry; `path` is relative to the entry."""

    def __init__(self, message: str, *, hint: str | None = None, path: JsonPath = (),
                 policy: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = path
        self.policy = policy


def normalize_target(raw: str) -> str:
    """`/code/` → `/code`; refuses relative paths, `..`, `/` and reserved system paths."""
    if not raw.startswith("/"):
        raise VolumeError(f"container path {raw!r} must be absolute", hint=f"write /{raw.lstrip('./')}")
    if "\x00" in raw or any(part == ".." for part in raw.split("/")):
        raise VolumeError(f"container path {raw!r} must not contain '..'", policy=True,
                          hint="name the directory directly, e.g. /data")
    target = posixpath.normpath(raw)
    target = "/" + target.lstrip("/")  # normpath keeps a leading '//'
    if target == "/":
        raise VolumeError("cannot import onto / (the container's root)", policy=True,
                          hint="choose a directory such as /code or /data")
    for reserved in RESERVED_TARGETS:
        if target == reserved or target.startswith(reserved + "/"):
            raise VolumeError(f"{target} is reserved (under {reserved})", policy=True,
                              hint="choose another directory")
    return target


def store_name(components: list[str], what: str) -> str:
    """Join artifact name components, refusing anything that could traverse the store."""
    parts = [part for part in components if part != ""]
    if not parts or len(parts) > MAX_NAME_COMPONENTS:
        raise VolumeError(f"{what} name must have 1–{MAX_NAME_COMPONENTS} parts, got {len(parts)}",
                          hint="e.g. vessl-artifact://ORG/PROJECT/NAME")
    for part in parts:
        if _UNFILLED.match(part):
            continue
        if not _NAME_COMPONENT.match(part) or part in (".", ".."):
            raise VolumeError(f"{what} name part {part!r} is not allowed", policy=".." in part,
                              hint="use letters, digits, '.', '_' and '-' (starting with a letter or digit)")
    return "/".join(parts)


def parse_source(value: Any, section: str) -> Source:
    """One `import`/`mount` value."""
    if isinstance(value, str):
        return _uri_source(value.strip(), section)
    kind, spec = _source_key(value)
    readonly = bool(value.get("readonly", False) or (value.get("options") or {}).get("readonly", False))
    return _verbose_source(kind, spec, readonly)


def parse_destination(value: Any) -> Destination:
    """One `export` value."""
    if isinstance(value, str):
        return _uri_destination(value.strip())
    kind, spec = _source_key(value)
    if kind == "artifact":
        if spec is None or spec is True:
            return ArtifactDestination("artifact", None)
        name = spec.get("artifact_name") or spec.get("name")
        return ArtifactDestination("artifact", _verbose_store_name(spec, name, "artifact"))
    if kind == "model":
        return ArtifactDestination("model", store_name(
            [spec.get("organization_name", ""), spec.get("model_repository_name", "")], "model"))
    if kind == "dataset":
        return ArtifactDestination("dataset", store_name(
            [spec.get("organization_name", ""), spec.get("dataset_name", "")], "dataset"))
    if kind in ("s3", "gs"):
        return ObjectStoreDestination(kind, spec.get("bucket", ""), spec.get("prefix", "") or "")  # type: ignore[arg-type]
    if kind == "volume":
        return VolumeDestination(_volume_name([spec.get("storage_name", ""), spec.get("volume_name", "")]))
    raise VolumeError(f"cannot export to {kind!r}", hint="export to an artifact, model, dataset or volume")


def _source_key(value: dict[str, Any]) -> tuple[str, Any]:
    keys = [key for key in value if key not in ("readonly", "options")]
    if len(keys) != 1:
        raise VolumeError("expected exactly one source key (git, hf, artifact, model, dataset, …)")
    return keys[0], value[keys[0]]


def _verbose_source(kind: str, spec: Any, readonly: bool) -> Source:
    if kind == "git":
        return _git_source(spec)
    if kind == "hf":
        return _hf_source(spec)
    if kind in ("artifact", "model", "dataset"):
        return _artifact_source(kind, spec)
    if kind in ("s3", "gs"):
        return ObjectStoreSource(kind, spec.get("bucket", ""), spec.get("prefix", "") or "")  # type: ignore[arg-type]
    if kind == "volume":
        return VolumeSource(_volume_name([spec.get("storage_name", ""), spec.get("volume_name", "")]))
    if kind == "hostpath":
        path = spec if isinstance(spec, str) else spec.get("path", "")
        return HostPathSource(_host_path(path), readonly)
    if kind == "nfs":
        return NfsSource(spec.get("server", ""), _host_path(spec.get("path", "")), readonly)
    if kind in _UNSUPPORTED_MOUNTS:
        return UnsupportedSource(kind)
    raise VolumeError(f"unknown source {kind!r}")


def _git_source(spec: Any) -> GitSource:
    if isinstance(spec, str):
        spec = {"url": spec}
    try:
        url = parse_git_url(str(spec["url"]))
    except GitUrlError as exc:
        raise VolumeError(exc.message, hint=exc.hint, path=("git", "url"), policy=True) from None
    ref = spec.get("ref")
    if ref is not None:
        try:
            ref = validate_git_ref(str(ref))
        except GitUrlError as exc:
            raise VolumeError(exc.message, hint=exc.hint, path=("git", "ref"), policy=True) from None
    depth = spec.get("depth")
    return GitSource(url, ref, spec.get("credential_name"), bool(spec.get("submodules", False)),
                     int(depth) if depth is not None else None)


def _hf_source(spec: Any) -> HuggingFaceSource:
    if isinstance(spec, str):
        spec = {"url": spec}
    source = _hf_uri(str(spec.get("url", "")))
    repo_type = spec.get("repo_type") or source.repo_type
    return HuggingFaceSource(source.repo_id, repo_type, spec.get("revision"))


def _hf_uri(uri: str) -> HuggingFaceSource:
    rest = uri.removeprefix("hf://")
    for prefix in ("https://", "http://"):
        rest = rest.removeprefix(prefix)
    rest = rest.removeprefix("huggingface.co/").strip("/")
    repo_type = "model"
    if rest.startswith("datasets/"):
        repo_type, rest = "dataset", rest.removeprefix("datasets/")
    if not _HF_REPO.match(rest) or ".." in rest:
        raise VolumeError(f"{uri!r} is not a Hugging Face repository",
                          hint="write hf://huggingface.co/ORG/NAME or hf://huggingface.co/datasets/ORG/NAME")
    return HuggingFaceSource(rest, repo_type)  # type: ignore[arg-type]


def _artifact_source(kind: str, spec: Any) -> ArtifactSource:
    if kind == "model":
        number = spec.get("model_number")
        name = store_name([spec.get("organization_name", ""), spec.get("model_repository_name", "")], "model")
        return ArtifactSource("model", name, _version(number))
    if kind == "dataset":
        return ArtifactSource("dataset", store_name(
            [spec.get("organization_name", ""), spec.get("dataset_name", "")], "dataset"))
    name = spec.get("name") or spec.get("artifact_name")
    return ArtifactSource("artifact", _verbose_store_name(spec, name, "artifact"), _version(spec.get("version")))


def _verbose_store_name(spec: dict[str, Any], name: Any, what: str) -> str:
    if not name:
        raise VolumeError(f"the {what} needs a name", hint="add name: NAME")
    parts = [spec.get("organization_name") or "", spec.get("project_name") or "", str(name)]
    return store_name(parts, what)


def _version(value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise VolumeError(f"version {value!r} is not a number") from None
    if number < 1:
        raise VolumeError("versions start at 1")
    return number


def _uri_source(uri: str, section: str) -> Source:
    scheme, _, rest = uri.partition("://")
    if scheme == "git":
        return _git_source({"url": uri})
    if scheme == "hf":
        return _hf_uri(uri)
    if scheme in ("vessl-artifact", "artifact", "vessl-model", "vessl-dataset"):
        return _artifact_uri(scheme, rest)
    if scheme in ("s3", "gs"):
        bucket, _, prefix = rest.partition("/")
        return ObjectStoreSource(scheme, bucket, prefix)  # type: ignore[arg-type]
    if scheme == "volume":
        return VolumeSource(_volume_name(rest.split("/")))
    if scheme == "hostpath":
        return HostPathSource(_host_path("/" + rest.lstrip("/")))
    if scheme == "nfs":
        server, _, path = rest.partition("/")
        return NfsSource(server, _host_path("/" + path))
    raise VolumeError(f"unknown {section} source {uri!r}",
                      hint="use git://, hf://, vessl-artifact://, vessl-model://, vessl-dataset://, "
                      "volume://, hostpath:// or nfs://")


def _artifact_uri(scheme: str, rest: str) -> ArtifactSource:
    rest = rest.strip("/")
    if scheme == "vessl-artifact":
        return ArtifactSource("artifact", store_name(rest.split("/"), "artifact") if rest else None)
    if scheme == "artifact":
        name, _, version = rest.partition(":")
        return ArtifactSource("artifact", store_name(name.split("/"), "artifact"), _version(version or None))
    if scheme == "vessl-model":
        parts = rest.split("/")
        number = parts.pop() if len(parts) == 3 else None
        return ArtifactSource("model", store_name(parts, "model"), _version(number))
    return ArtifactSource("dataset", store_name(rest.split("/"), "dataset"))


def _uri_destination(uri: str) -> Destination:
    scheme, _, rest = uri.partition("://")
    kinds: dict[str, ArtifactKind] = {"vessl-artifact": "artifact", "artifact": "artifact",
                                      "vessl-model": "model", "vessl-dataset": "dataset"}
    if scheme in kinds:
        rest = rest.strip("/")
        return ArtifactDestination(kinds[scheme], store_name(rest.split("/"), kinds[scheme]) if rest else None)
    if scheme in ("s3", "gs"):
        bucket, _, prefix = rest.partition("/")
        return ObjectStoreDestination(scheme, bucket, prefix)  # type: ignore[arg-type]
    if scheme == "volume":
        return VolumeDestination(_volume_name(rest.split("/")))
    raise VolumeError(f"cannot export to {uri!r}",
                      hint="use vessl-artifact://ORG/PROJECT/NAME, artifact://NAME, vessl-model://, "
                      "vessl-dataset:// or volume://NAME")


def _volume_name(parts: list[str]) -> str:
    name = "-".join(part for part in parts if part)
    if not _VOLUME_NAME.match(name):
        raise VolumeError(f"volume name {name!r} is not allowed",
                          hint="use letters, digits, '.', '_' and '-', e.g. volume://my-data")
    return name


def _host_path(path: str) -> str:
    if not path.startswith("/") or "\x00" in path or ".." in path.split("/"):
        raise VolumeError(f"host path {path!r} must be absolute without '..'", policy=True)
    return posixpath.normpath(path)
