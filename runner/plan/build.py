"""`build_plan`: a loaded manifest + host facts + options → a `RunPlan`, or every problem at once.

Pure apart from reading the file system (real paths of host mounts). The facts are gathered by
the caller (engine or `create --dry-run`), so the same inputs always give the same plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner import __version__
from runner.backends import spec as labels
from runner.backends.spec import ContainerSpec, Mount, PortBinding
from runner.entrypoint import RUNNER_DIR, RUNNER_DIR_NAME, EntrypointSpec, entrypoint_command
from runner.manifest.model import Manifest, Port
from runner.manifest.pipeline import LoadedManifest
from runner.manifest.problems import ManifestError, Problem
from runner.plan.model import BuildPlan, Endpoint, ImagePlan, RunPlan
from runner.plan.volumes import ArtifactKey, ResolvedArtifact, VolumeFacts, VolumePlanner
from runner.presets import PresetTable

LOOPBACK = "127.0.0.1"
DEFAULT_SHM_BYTES = 2 << 30
GPU_SHM_BYTES = 16 << 30
LOG_MAX_SIZE = "25m"  # × 2 files: a run's engine-side log never exceeds 50 MiB
LOG_MAX_FILES = 2
SPEC_HASH_VERSION = 1


@dataclass(frozen=True)
class RunFlags:
    """What the user chose on the command line for this run."""

    run_name: str | None = None  # --name; default: the manifest's name
    gpus_override: int | None = None  # --gpus N (0 runs a GPU manifest on the CPU)
    allow_local_sources: bool = False
    allow_host_paths: tuple[str, ...] = ()
    publish_all_interfaces: bool = False
    grace_s: float = 10.0


@dataclass(frozen=True)
class PlanOptions:
    run_id: str
    store_id: str
    runs_dir: Path
    runner_home: Path
    flags: RunFlags = field(default_factory=RunFlags)
    presets: PresetTable = field(default_factory=PresetTable)


@dataclass(frozen=True)
class HostFacts:
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    busy_ports: frozenset[int] = frozenset()  # host ports already taken on the loopback interface
    artifacts: Mapping[ArtifactKey, ResolvedArtifact] = field(default_factory=dict)


def spec_hash(loaded: LoadedManifest, run_name: str, gpus_override: int | None) -> str:
    """sha256 of the canonical resolved manifest (secrets as names) and what changes the container."""
    canonical = json.dumps(
        {"v": SPEC_HASH_VERSION, "manifest": loaded.resolved_data, "name": run_name, "gpus": gpus_override},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_plan(loaded: LoadedManifest, options: PlanOptions, facts: HostFacts) -> RunPlan:
    manifest = loaded.manifest
    problems: list[Problem] = []
    warnings = [p.message for p in loaded.warnings]
    run_name = options.flags.run_name or manifest.name
    run_dir = options.runs_dir / options.run_id
    volumes = VolumePlanner(options.run_id, run_dir, VolumeFacts(
        facts.artifacts, options.runner_home, options.flags.allow_local_sources, options.flags.allow_host_paths,
    )).build(manifest)
    problems += volumes.problems
    warnings += volumes.warnings
    endpoints, bindings = _ports(manifest.ports, options, facts, problems, warnings)
    gpus, cpu, memory = _resources(manifest, options, facts, warnings)
    if problems:
        raise ManifestError(loaded.source, loaded.locate(problems))
    digest = spec_hash(loaded, run_name, options.flags.gpus_override)
    entry = _entrypoint(manifest, options)
    env = [(var.name, var.value or "") for var in manifest.env if not var.secret]
    env += [("RUNNER_RUN_ID", options.run_id), ("RUNNER_RUN_NAME", run_name), ("TINI_KILL_PROCESS_GROUP", "1")]
    if gpus:
        env.append(("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"))
    image = image_plan(manifest)
    container = ContainerSpec(
        name=f"runner-{options.run_id}",
        image=image.ref or "",
        entrypoint=entrypoint_command() if entry is not None else None,
        command=() if entry is not None and not entry.exec_original else None,
        env=tuple(env),
        labels=_labels(options, digest, run_name),
        mounts=tuple(volumes.mounts) + (_runner_dir_mount(run_dir) if entry is not None else ()),
        volumes=tuple(volumes.volumes),
        ports=bindings,
        nano_cpus=int(cpu * 1e9) if cpu else None,
        memory_bytes=memory,
        shm_size_bytes=_shm(manifest, gpus, memory),
        gpu_count=gpus,
        stop_timeout_s=max(1, int(options.flags.grace_s)),
        log_max_size=LOG_MAX_SIZE,
        log_max_files=LOG_MAX_FILES,
    )
    return RunPlan(
        run_id=options.run_id, run_name=run_name, run_type=manifest.run_type, spec_hash=digest,
        image=image, container=container, entrypoint=entry, imports=tuple(volumes.imports),
        exports=tuple(volumes.exports), endpoints=endpoints, gpu_count=gpus,
        max_runtime_s=manifest.interactive.max_runtime_s if manifest.interactive else None,
        secret_env=manifest.secret_env_names, run_dir=run_dir, warnings=tuple(warnings),
        notes=tuple(volumes.notes),
    )


def _runner_dir_mount(run_dir: Path) -> tuple[Mount, ...]:
    """The entrypoint and step scripts (and the state file the entrypoint writes) live in the run dir."""
    return (Mount("bind", str(run_dir / RUNNER_DIR_NAME), RUNNER_DIR),)


def _labels(options: PlanOptions, digest: str, run_name: str) -> tuple[tuple[str, str], ...]:
    return (
        (labels.LABEL_MANAGED, "true"),
        (labels.LABEL_STORE, options.store_id),
        (labels.LABEL_RUN_ID, options.run_id),
        (labels.LABEL_SPEC_HASH, digest),
        (labels.LABEL_VERSION, __version__),
        (labels.LABEL_NAME, run_name),
    )


def _entrypoint(manifest: Manifest, options: PlanOptions) -> EntrypointSpec | None:
    stay_idle = manifest.termination_protection or manifest.interactive is not None
    return EntrypointSpec(
        steps=manifest.steps,
        secret_env=manifest.secret_env_names,
        max_runtime_s=manifest.interactive.max_runtime_s if manifest.interactive else None,
        grace_s=options.flags.grace_s,
        stay_idle=stay_idle,
        exec_original=not manifest.steps and not stay_idle,
    )


def image_plan(manifest: Manifest) -> ImagePlan:
    spec = manifest.image
    if spec.build is None:
        return ImagePlan(ref=spec.ref, credential_name=spec.credential_name)
    build = spec.build
    base_dir = Path(manifest.base_dir)
    context = (base_dir / build.context).resolve() if build.context else None
    plan = BuildPlan(
        context_dir=context, dockerfile=build.dockerfile, args=build.args, target=build.target,
        tag=build.tag, base_image=spec.ref if build.setup else None, setup=build.setup,
    )
    return ImagePlan(ref=None, credential_name=spec.credential_name, build=plan)


def _ports(ports: tuple[Port, ...], options: PlanOptions, facts: HostFacts, problems: list[Problem],
           warnings: list[str]) -> tuple[tuple[Endpoint, ...], tuple[PortBinding, ...]]:
    endpoints: list[Endpoint] = []
    bindings: list[PortBinding] = []
    claimed: set[int] = set()
    for index, port in enumerate(ports):
        host_ip = port.host_ip or LOOPBACK
        local_only = host_ip in (LOOPBACK, "::1", "localhost")
        if not local_only and not options.flags.publish_all_interfaces:
            problems.append(Problem(("ports", index, "host_ip"), f"publishing port {port.port} on {host_ip} is "
                                    "refused by default (only this machine should reach it)", policy=True,
                                    hint="pass --publish-all-interfaces to expose it on other interfaces"))
            continue
        if not local_only:
            warnings.append(f"port {port.port} ({port.name}) is published on {host_ip}: other machines on the "
                            "network can reach it")
        host_port = _host_port(port, facts, claimed, warnings)
        if host_port is not None:
            if host_port in claimed:
                problems.append(Problem(("ports", index), f"host port {host_port} is used twice"))
                continue
            claimed.add(host_port)
        protocol: Literal["tcp", "udp"] = "udp" if port.type == "udp" else "tcp"
        bindings.append(PortBinding(port.port, protocol, host_ip, host_port))
        endpoints.append(Endpoint(port.name, port.port, port.type, host_ip, host_port, port.health_path or "/"))
    return tuple(endpoints), tuple(bindings)


def _host_port(port: Port, facts: HostFacts, claimed: set[int], warnings: list[str]) -> int | None:
    if port.host_port == 0:
        return None
    if port.host_port is not None:
        return port.host_port  # explicit: a conflict fails the run with the engine's message
    if port.port in facts.busy_ports or port.port in claimed:
        warnings.append(f"host port {port.port} is busy; {port.name} is published on a free port instead")
        return None
    return port.port


def _resources(manifest: Manifest, options: PlanOptions, facts: HostFacts,
               warnings: list[str]) -> tuple[int, float | None, int | None]:
    resources = manifest.resources
    preset = options.presets.lookup(resources.preset) if resources.preset else None
    if resources.preset and preset is None:
        warnings.append(f"unknown preset {resources.preset!r}: no CPU or memory limit applied")
    gpus = resources.gpu_count
    if gpus is None:
        gpus = preset.gpus if preset else (1 if (resources.preset or "").startswith("gpu") else 0)
    if options.flags.gpus_override is not None:
        if gpus and options.flags.gpus_override == 0:
            warnings.append(f"--gpus 0: running without the {gpus} GPU(s) the manifest asks for")
        gpus = options.flags.gpus_override
    cpu = resources.cpu if resources.cpu is not None else (preset.cpu if preset else None)
    if cpu is not None and cpu > facts.cpu_count:
        warnings.append(f"{cpu:g} CPUs requested; this machine has {facts.cpu_count}: limiting to {facts.cpu_count}")
        cpu = float(facts.cpu_count)
    memory = resources.memory_bytes if resources.memory_bytes is not None else (
        preset.memory_bytes if preset else None)
    return gpus, cpu, memory


def _shm(manifest: Manifest, gpus: int, memory: int | None) -> int:
    if manifest.resources.shm_size_bytes is not None:
        return manifest.resources.shm_size_bytes
    wanted = GPU_SHM_BYTES if gpus else DEFAULT_SHM_BYTES
    return min(wanted, memory // 2) if memory else wanted


def plan_facts_json(facts: HostFacts) -> dict[str, Any]:
    return {"cpu_count": facts.cpu_count, "busy_ports": sorted(facts.busy_ports)}
