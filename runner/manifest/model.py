"""The manifest as runner understands it: frozen dataclasses, one shape for every spelling.

`git://…` and `{git: {url, ref}}` are both a `GitSource`; `- 8000`, `{port: 8000}` and
`{name, type, port}` are all a `Port`; `/code/` and `/code` are the same target. Secret env
values never appear here — an `EnvVar` carries only whether it is secret and the name of the
secret it comes from; the values travel separately in a `SecretBag`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from runner.manifest.giturl import GitUrl

ArtifactKind = Literal["artifact", "model", "dataset"]
PortType = Literal["http", "tcp", "udp"]


# -- sources (import / mount) ---------------------------------------------------------------------
@dataclass(frozen=True)
class GitSource:
    url: GitUrl
    ref: str | None = None
    credential_name: str | None = None
    submodules: bool = False
    depth: int | None = None


@dataclass(frozen=True)
class HuggingFaceSource:
    repo_id: str  # ORG/NAME
    repo_type: Literal["model", "dataset"] = "model"
    revision: str | None = None


@dataclass(frozen=True)
class ArtifactSource:
    kind: ArtifactKind
    name: str | None  # store name, e.g. ORG/PROJECT/NAME; None = bare vessl-artifact:// (pipelines)
    version: int | None = None  # None = LATEST


@dataclass(frozen=True)
class VolumeSource:
    name: str  # a named Docker volume


@dataclass(frozen=True)
class HostPathSource:
    path: str
    readonly: bool = False


@dataclass(frozen=True)
class NfsSource:
    server: str
    path: str
    readonly: bool = False


@dataclass(frozen=True)
class ObjectStoreSource:
    scheme: Literal["s3", "gs"]
    bucket: str
    prefix: str = ""


@dataclass(frozen=True)
class UnsupportedSource:
    """A VESSL source with no local meaning (e.g. google_disk); refused at plan time."""

    kind: str


Source = (
    GitSource | HuggingFaceSource | ArtifactSource | VolumeSource | HostPathSource | NfsSource
    | ObjectStoreSource | UnsupportedSource
)


@dataclass(frozen=True)
class Volume:
    """One entry of `import` or `mount`: a container path and where its content comes from."""

    target: str  # normalised absolute container path, no trailing slash
    source: Source


# -- export destinations --------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactDestination:
    kind: ArtifactKind
    name: str | None  # None = auto-named (bare vessl-artifact:// or {artifact: null})


@dataclass(frozen=True)
class VolumeDestination:
    name: str


@dataclass(frozen=True)
class ObjectStoreDestination:
    scheme: Literal["s3", "gs"]
    bucket: str
    prefix: str = ""


Destination = ArtifactDestination | VolumeDestination | ObjectStoreDestination


@dataclass(frozen=True)
class Export:
    target: str
    destination: Destination


# -- the rest -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandStep:
    command: str
    workdir: str | None = None


@dataclass(frozen=True)
class WaitStep:
    seconds: float
    text: str  # as written, e.g. "10s"


Step = CommandStep | WaitStep


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    type: PortType = "http"
    host_port: int | None = None  # None = same as port when free; 0 = any free port
    host_ip: str | None = None  # None = 127.0.0.1
    health_path: str | None = None


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None  # None when secret: the value is in the SecretBag
    secret: bool = False
    secret_name: str | None = None  # the secret/placeholder it comes from; None = inline value


@dataclass(frozen=True)
class BuildSpec:
    context: str | None = None  # relative to the manifest's directory
    dockerfile: str | None = None
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    tag: str | None = None
    setup: tuple[str, ...] = ()  # shell commands baked into layers on top of ImageSpec.ref


@dataclass(frozen=True)
class ImageSpec:
    ref: str | None  # None only with build.context
    credential_name: str | None = None
    build: BuildSpec | None = None


@dataclass(frozen=True)
class Resources:
    cluster: str | None = None
    preset: str | None = None
    cpu: float | None = None  # cores
    memory_bytes: int | None = None
    gpu_count: int | None = None  # None = as the preset says
    gpu_type: str | None = None
    shm_size_bytes: int | None = None
    spot: str | None = None
    node_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interactive:
    max_runtime_s: float | None = None
    idle_timeout_s: float | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    image: ImageSpec
    resources: Resources
    description: str = ""
    tags: tuple[str, ...] = ()
    imports: tuple[Volume, ...] = ()
    mounts: tuple[Volume, ...] = ()
    exports: tuple[Export, ...] = ()
    steps: tuple[Step, ...] = ()
    interactive: Interactive | None = None
    ports: tuple[Port, ...] = ()
    env: tuple[EnvVar, ...] = ()
    service_account_name: str = ""
    termination_protection: bool = False
    base_dir: str = field(default=".", compare=False)  # where relative build paths start

    @property
    def run_type(self) -> Literal["batch", "interactive"]:
        return "interactive" if self.interactive is not None else "batch"

    @property
    def secret_env_names(self) -> tuple[str, ...]:
        return tuple(var.name for var in self.env if var.secret)
