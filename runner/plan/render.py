"""A plan as JSON-ready data: what `create --dry-run --json` prints and the run directory keeps."""

from __future__ import annotations

from typing import Any

from runner.entrypoint import EntrypointSpec
from runner.manifest.model import CommandStep, WaitStep
from runner.manifest.secretbag import MASK
from runner.manifest.units import format_bytes
from runner.plan.model import ArtifactExport, ArtifactImport, GitImport, HuggingFaceImport, ImportStep, RunPlan


def plan_to_json(plan: RunPlan) -> dict[str, Any]:
    container = plan.container
    env = dict(container.env)
    env.update(dict.fromkeys(plan.secret_env, MASK))
    return {
        "run": {"id": plan.run_id, "name": plan.run_name, "type": plan.run_type, "spec_hash": plan.spec_hash},
        "image": _image(plan),
        "steps": _steps(plan.entrypoint),
        "container": {
            "name": container.name,
            "entrypoint": list(container.entrypoint) if container.entrypoint is not None else None,
            "command": list(container.command) if container.command is not None else "(image default)",
            "env": env,
            "secrets": [f"/run/secrets/{name}" for name in plan.secret_env],
            "labels": dict(container.labels),
            "mounts": [{"type": m.type, "source": m.source, "target": m.target, "read_only": m.read_only}
                       for m in container.mounts],
            "volumes": [{"name": v.name, "driver_opts": dict(v.driver_opts)} for v in container.volumes],
            "init": container.init,
            "stop_timeout_s": container.stop_timeout_s,
            "logs": {"max_size": container.log_max_size, "max_files": container.log_max_files},
        },
        "resources": {
            "cpus": container.nano_cpus / 1e9 if container.nano_cpus else None,
            "memory": format_bytes(container.memory_bytes) if container.memory_bytes else None,
            "shm_size": format_bytes(container.shm_size_bytes) if container.shm_size_bytes else None,
            "gpus": plan.gpu_count,
        },
        "ports": [{"name": e.name, "container_port": e.container_port, "type": e.type,
                   "host": f"{e.host_ip}:{e.host_port if e.host_port else '(any free port)'}",
                   "health_path": e.health_path} for e in plan.endpoints],
        "imports": [_import(step) for step in plan.imports],
        "exports": [{"target": e.target, "to": f"{e.kind}:{e.name}", "base": _base(e),
                     "changes_from": str(e.view.upper_dir)} for e in plan.exports],
        "max_runtime_s": plan.max_runtime_s,
        "warnings": list(plan.warnings),
        "notes": list(plan.notes),
    }


def _base(export: ArtifactExport) -> str | None:
    base = export.base
    return f"{base.kind}:{base.name}:{base.version}" if base else None


def _image(plan: RunPlan) -> dict[str, Any]:
    image = plan.image
    if image.build is None:
        return {"ref": image.ref, "action": "use the local image, else pull it",
                "credential_name": image.credential_name}
    build = image.build
    return {"ref": build.tag or "(content-hash tag)", "action": "build (skipped when unchanged)",
            "context": str(build.context_dir) if build.context_dir else None, "dockerfile": build.dockerfile,
            "args": dict(build.args), "base_image": build.base_image, "setup": list(build.setup)}


def _steps(entry: EntrypointSpec | None) -> list[dict[str, Any]]:
    if entry is None:
        return []
    steps: list[dict[str, Any]] = []
    for step in entry.steps:
        if isinstance(step, WaitStep):
            steps.append({"wait": step.text})
        elif isinstance(step, CommandStep):
            steps.append({"command": step.command, "workdir": step.workdir})
    if entry.exec_original:
        steps.append({"command": "(the image's own entrypoint and command)"})
    if entry.stay_idle:
        steps.append({"then": "stay idle until terminated"})
    return steps


def _import(step: ImportStep) -> dict[str, Any]:
    if isinstance(step, GitImport):
        return {"target": step.target, "git": step.source.url.display, "ref": step.source.ref or "(default branch)",
                "checkout": str(step.host_dir), "credential_name": step.source.credential_name}
    if isinstance(step, ArtifactImport):
        version = step.version if step.version is not None else "(none yet: starts empty)"
        return {"target": step.target, "artifact": f"{step.kind}:{step.name}", "version": version,
                "view": "copy-on-write overlay"}
    assert isinstance(step, HuggingFaceImport)
    return {"target": step.target, "huggingface": f"{step.repo_type}:{step.repo_id}",
            "revision": step.revision or "main", "view": "copy-on-write overlay of the shared HF cache"}
