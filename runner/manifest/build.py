"""Validated manifest data → the typed `Manifest`, collecting located problems.

Runs after schema validation, one section at a time; a section the schema already faulted is
skipped so its problems are not reported twice. Everything here is about meaning: which GPU
count the several spellings add up to, whether two entries land on the same container path,
whether a duration parses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from runner.manifest.load import LoadedDocument
from runner.manifest.model import (
    BuildSpec,
    CommandStep,
    EnvVar,
    Export,
    ImageSpec,
    Interactive,
    Manifest,
    Port,
    Resources,
    Step,
    Volume,
    WaitStep,
)
from runner.manifest.problems import JsonPath, Problem, Severity
from runner.manifest.units import parse_cpu, parse_duration, parse_memory
from runner.manifest.volumes import VolumeError, normalize_target, parse_destination, parse_source

MAX_NAME_LENGTH = 200
_ACCELERATOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(?::\s*(\d+))?\s*$")
_GPU_KEY = "nvidia.com/gpu"
_MIG_KEY = "nvidia.com/mig"


class _Problem(Exception):
    def __init__(self, message: str, *, hint: str | None = None, path: JsonPath = (),
                 policy: bool = False) -> None:
        super().__init__(message)
        self.message, self.hint, self.path, self.policy = message, hint, path, policy


def build_manifest(document: LoadedDocument, *, default_name: str, base_dir: str,
                   skip_sections: frozenset[str] = frozenset(),
                   unfilled: frozenset[JsonPath] = frozenset()) -> tuple[Manifest | None, list[Problem]]:
    """The model (None if any problem is an error) and every problem found.

    `unfilled` are paths whose values still hold a placeholder without a value (already reported);
    a semantic error in such an entry follows from the placeholder and is not reported again.
    """
    builder = _Builder(document, skip_sections, unfilled)
    manifest = builder.build(default_name, base_dir)
    errors = [p for p in builder.problems if p.is_error]
    return (None if errors else manifest), builder.problems


class _Builder:
    def __init__(self, document: LoadedDocument, skip: frozenset[str], unfilled: frozenset[JsonPath]) -> None:
        self.document = document
        self.data = document.data
        self.skip = skip
        self.unfilled = unfilled
        self.problems: list[Problem] = []

    def _explained_by_placeholder(self, path: JsonPath) -> bool:
        return any(hole[: len(path)] == path for hole in self.unfilled)

    def _warn(self, path: JsonPath, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(path, message, hint=hint, severity=Severity.WARNING,
                                     position=self.document.position_of(path)))

    @contextmanager
    def _at(self, path: JsonPath) -> Iterator[None]:
        """Turn a semantic failure inside the block into a problem located at `path` (+ its subpath)."""
        try:
            yield
        except (_Problem, VolumeError) as exc:
            where = (*path, *exc.path)
            if self._explained_by_placeholder(path):
                return
            self.problems.append(Problem(where, exc.message, hint=exc.hint, policy=exc.policy,
                                         position=self.document.position_of(where)))
        except ValueError as exc:
            if not self._explained_by_placeholder(path):
                self.problems.append(Problem(path, str(exc), position=self.document.position_of(path)))

    def _section(self, key: str, build: Callable[[Any], Any], default: Any) -> Any:
        value = self.data.get(key)
        if value is None or key in self.skip:
            return default
        with self._at((key,)):
            return build(value)
        return default  # the section had a problem, now recorded

    def build(self, default_name: str, base_dir: str) -> Manifest:
        name = self._section("name", self._name, default_name)
        resources = self._section("resources", self._resources, Resources())
        image = self._section("image", self._image, ImageSpec(ref=None))
        imports = self._section("import", lambda v: self._volumes("import", v), ())
        mounts = self._section("mount", lambda v: self._volumes("mount", v), ())
        exports = self._section("export", self._exports, ())
        self._check_overlaps(imports, mounts)
        return Manifest(
            name=name,
            image=image,
            resources=resources,
            description=str(self.data.get("description") or ""),
            tags=tuple(str(tag) for tag in self._section("tags", list, [])),
            imports=imports,
            mounts=mounts,
            exports=exports,
            steps=self._section("run", self._steps, ()),
            interactive=self._section("interactive", self._interactive, None),
            ports=self._section("ports", self._ports, ()) + self._legacy_interactive_ports(),
            env=self._section("env", self._env, ()),
            service_account_name=str(self.data.get("service_account_name") or ""),
            termination_protection=bool(self.data.get("termination_protection", False)),
            base_dir=base_dir,
        )

    # -- name -----------------------------------------------------------------------------------
    @staticmethod
    def _name(value: Any) -> str:
        name = str(value).strip()
        if not name:
            raise _Problem("the run name is empty", hint="write name: my-run, or leave the key out")
        if len(name) > MAX_NAME_LENGTH or not name.isprintable():
            raise _Problem(f"the run name must be printable and at most {MAX_NAME_LENGTH} characters")
        return name

    # -- resources ------------------------------------------------------------------------------
    def _resources(self, value: dict[str, Any]) -> Resources:
        requests = value.get("requests") or {}
        counts: dict[str, int] = {}
        gpu_type = None
        if _GPU_KEY in requests or _MIG_KEY in requests:
            key = _GPU_KEY if _GPU_KEY in requests else _MIG_KEY
            spec = requests[key] or {}
            counts[f"requests.{key}"] = _count(spec.get("quantity", 1), ("requests", key, "quantity"))
            gpu_type = spec.get("device_type")
        if value.get("accelerators") is not None:
            gpu_type, counts["accelerators"] = _accelerator(str(value["accelerators"]))
        if value.get("gpus") is not None:
            counts["gpus"] = _count(value["gpus"], ("gpus",))
        if len(set(counts.values())) > 1:
            spelled = ", ".join(f"{where}={count}" for where, count in counts.items())
            raise _Problem(f"GPU counts disagree ({spelled})", hint="give the GPU count once")
        cpu = requests.get("cpu", value.get("cpu"))
        memory = requests.get("memory", value.get("memory"))
        return Resources(
            cluster=value.get("cluster"),
            preset=value.get("preset") or value.get("name"),
            cpu=self._parsed(parse_cpu, cpu, ("requests", "cpu") if "cpu" in requests else ("cpu",)),
            memory_bytes=self._parsed(parse_memory, memory,
                                      ("requests", "memory") if "memory" in requests else ("memory",)),
            gpu_count=next(iter(counts.values()), None),
            gpu_type=gpu_type,
            shm_size_bytes=self._parsed(parse_memory, value.get("shm_size"), ("shm_size",)),
            spot=value.get("spot") or None,
            node_names=tuple(value.get("node_names") or ()),
        )

    @staticmethod
    def _parsed(parse: Callable[[Any], Any], value: Any, path: JsonPath) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise _Problem(str(exc), path=path) from None

    # -- image ----------------------------------------------------------------------------------
    def _image(self, value: Any) -> ImageSpec:
        if isinstance(value, str):
            return ImageSpec(ref=value.strip())
        for key in ("credential_id", "image_id"):
            if value.get(key) is not None:
                self._warn(("image", key), f"{key} refers to a VESSL object runner cannot see; it is ignored",
                           hint="use url: IMAGE and credential_name: NAME (stored with `runner secret set`)")
        build = value.get("build")
        spec = None
        if build is not None:
            setup = build.get("setup") or ()
            spec = BuildSpec(
                context=build.get("context"), dockerfile=build.get("dockerfile"),
                args=tuple(sorted((str(k), str(v)) for k, v in (build.get("args") or {}).items())),
                target=build.get("target"), tag=build.get("tag"),
                setup=(setup,) if isinstance(setup, str) else tuple(setup),
            )
            if spec.setup and not value.get("url"):
                raise _Problem("build.setup needs a base image", path=("url",), hint="add url: BASE_IMAGE")
        return ImageSpec(ref=value.get("url"), credential_name=value.get("credential_name"), build=spec)

    # -- import / mount / export ----------------------------------------------------------------
    def _volumes(self, section: str, value: dict[str, Any]) -> tuple[Volume, ...]:
        volumes: dict[str, Volume] = {}
        for raw_target, source in value.items():
            with self._at((section, raw_target)):
                target = normalize_target(raw_target)
                if target in volumes:
                    raise _Problem(f"{target} appears twice in {section}",
                                   hint="`/code/` and `/code` are the same path; keep one")
                volumes[target] = Volume(target, parse_source(source, section))
        return tuple(volumes.values())

    def _exports(self, value: dict[str, Any]) -> tuple[Export, ...]:
        exports: dict[str, Export] = {}
        for raw_target, destination in value.items():
            with self._at(("export", raw_target)):
                target = normalize_target(raw_target)
                if target in exports:
                    raise _Problem(f"{target} appears twice in export", hint="keep one entry")
                exports[target] = Export(target, parse_destination(destination))
        return tuple(exports.values())

    def _check_overlaps(self, imports: tuple[Volume, ...], mounts: tuple[Volume, ...]) -> None:
        imported = {volume.target for volume in imports}
        for volume in mounts:
            if volume.target in imported:
                path = ("mount", volume.target)
                self.problems.append(Problem(path, f"{volume.target} is both imported and mounted",
                                             hint="use one of them", position=self.document.position_of(path)))

    # -- run ------------------------------------------------------------------------------------
    def _steps(self, value: Any) -> tuple[Step, ...]:
        items = [value] if isinstance(value, str) else list(value)
        steps: list[Step] = []
        for index, item in enumerate(items):
            with self._at(("run", index) if not isinstance(value, str) else ("run",)):
                steps.append(_step(item))
        return tuple(steps)

    # -- interactive ----------------------------------------------------------------------------
    def _interactive(self, value: dict[str, Any]) -> Interactive:
        jupyter = value.get("jupyter") or {}
        idle = jupyter.get("idle_timeout", value.get("idle_timeout")) if isinstance(jupyter, dict) else None
        runtime_key = "max_runtime"
        if "max_runtime" not in value and "runtime" in value:
            runtime_key = "runtime"
            self._warn(("interactive", "runtime"), "`interactive.runtime` is the 2023 spelling",
                       hint="write interactive.max_runtime")
        return Interactive(
            max_runtime_s=self._parsed(parse_duration, value.get(runtime_key), (runtime_key,)),
            idle_timeout_s=self._parsed(parse_duration, idle, ("jupyter", "idle_timeout")),
        )

    # -- ports ----------------------------------------------------------------------------------
    def _ports(self, value: list[Any]) -> tuple[Port, ...]:
        ports: list[Port] = []
        for index, item in enumerate(value):
            with self._at(("ports", index)):
                port = _port(item)
                if any(p.port == port.port for p in ports):
                    raise _Problem(f"port {port.port} is listed twice")
                if any(p.name == port.name for p in ports):
                    raise _Problem(f"port name {port.name!r} is used twice", path=("name",))
                ports.append(port)
        return tuple(ports)

    def _legacy_interactive_ports(self) -> tuple[Port, ...]:
        interactive = self.data.get("interactive")
        if not isinstance(interactive, dict) or not interactive.get("ports") or "interactive" in self.skip:
            return ()
        self._warn(("interactive", "ports"), "`interactive.ports` is the 2023 spelling",
                   hint="move these ports to the top-level `ports` list")
        declared = {item if isinstance(item, int) else item.get("port") for item in self.data.get("ports") or ()}
        extra = [item for item in interactive["ports"] if (item if isinstance(item, int) else item.get("port"))
                 not in declared]
        return self._ports(extra) if extra else ()

    # -- env ------------------------------------------------------------------------------------
    def _env(self, value: Any) -> tuple[EnvVar, ...]:
        entries: list[tuple[str, Any, JsonPath]]
        if isinstance(value, list):  # legacy: - {key, value}
            entries = [(str(item["key"]), item.get("value"), ("env", i, "value")) for i, item in enumerate(value)]
        else:
            entries = [(str(key), item, ("env", key)) for key, item in value.items()]
        return tuple(self._env_var(name, item, path) for name, item, path in entries)

    def _env_var(self, name: str, value: Any, path: JsonPath) -> EnvVar:
        if isinstance(value, dict):
            if isinstance(value.get("secret"), str):
                return EnvVar(name, None, secret=True, secret_name=value["secret"])
            if value.get("secret") is True or "secret_id" in value:  # secret_id: a VESSL secret, reported unfilled
                return EnvVar(name, None, secret=True)
            if "value" in value:
                return EnvVar(name, self._text(value["value"], (*path, "value")))
            if "text" in value:
                return EnvVar(name, self._text(value["text"], (*path, "text")))
            return EnvVar(name, "")  # {source: inject} without a value: already reported
        return EnvVar(name, self._text(value, path))

    def _text(self, value: Any, path: JsonPath) -> str:
        if isinstance(value, str):
            return value
        return self.document.scalar_text.get(path, "" if value is None else str(value))


def _count(value: Any, path: JsonPath) -> int:
    try:
        count = int(str(value).strip())
    except ValueError:
        raise _Problem(f"GPU quantity {value!r} is not a whole number", path=path) from None
    if count < 0:
        raise _Problem("GPU quantity cannot be negative", path=path)
    return count


def _accelerator(text: str) -> tuple[str, int]:
    match = _ACCELERATOR.match(text)
    if match is None:
        raise _Problem(f"accelerators {text!r} is not TYPE:COUNT", path=("accelerators",),
                       hint="e.g. accelerators: L4:1")
    return match.group(1), int(match.group(2) or 1)


def _step(item: Any) -> Step:
    if isinstance(item, str):
        return CommandStep(item)
    if "wait" in item:
        text = str(item["wait"])
        return WaitStep(parse_duration(item["wait"]), text)
    workdir = item.get("workdir")
    if workdir is not None:
        workdir = str(workdir)
        if not workdir.startswith("/"):
            raise _Problem(f"workdir {workdir!r} must be an absolute path", path=("workdir",),
                           hint=f"e.g. workdir: /{workdir.lstrip('./')}")
    return CommandStep(str(item.get("command", "")), workdir)


def _port(item: Any) -> Port:
    if isinstance(item, int):
        return Port(name=f"port-{item}", port=item)
    number = int(item["port"])
    return Port(
        name=str(item.get("name") or f"port-{number}"),
        port=number,
        type=item.get("type", "http"),
        host_port=item.get("host_port"),
        host_ip=item.get("host_ip"),
        health_path=item.get("health_path"),
    )
