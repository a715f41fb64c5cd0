"""`create`: record the intent, then image → imports → container → running; every failure recorded.

Order matters for crash safety (reliability.md §2): the engine is pinged before anything is written
(an unreachable engine writes nothing); the run record exists before any engine object; the
container's name is deterministic and its labels say whose it is, so a crash at any point leaves
something `reconcile` and `gc` understand. A failure after the container was created removes it
(and the run's volumes) before the run is marked failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner.backends.base import EngineInfo, EngineNotFound
from runner.backends.docker import DockerBackend, EngineApiError
from runner.backends.spec import LABEL_RUN_ID, LABEL_SPEC_HASH, LABEL_STORE, ContainerFile
from runner.engine.cleanup import remove_run_objects
from runner.engine.context import Engine
from runner.engine.events import Notice
from runner.engine.imports import prepare_imports
from runner.engine.outcome import start_failure_reason
from runner.entrypoint import SECRETS_DIR, write_entrypoint_dir
from runner.errors import EngineError, ImportFailedError, RunFailedError, RunnerError
from runner.facts import gather_host_facts
from runner.faults import checkpoint
from runner.ids import new_run_id
from runner.images import ensure_image, registry_auth
from runner.interrupts import protected
from runner.manifest.pipeline import LoadedManifest
from runner.plan.build import PlanOptions, RunFlags, build_plan
from runner.plan.model import RunPlan
from runner.presets import PresetTable
from runner.store import RunRecord, RunStore, owner_token

GPU_HINT = ("install nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`, "
            "then restart Docker; or pass --gpus 0 to run this manifest without GPUs")


class GpuUnavailableError(EngineError):
    """GPUs were requested and the engine cannot provide any."""


class RunAbortedError(RunnerError):
    """A terminate arrived while the run was still being created."""


@dataclass(frozen=True)
class CreateResult:
    record: RunRecord
    plan: RunPlan | None
    adopted: bool  # an active run with the same name and spec already existed


def create_run(engine: Engine, loaded: LoadedManifest, flags: RunFlags) -> CreateResult:
    backend = engine.backend()
    info = backend.info()  # an unreachable engine fails here, before anything is written
    store = engine.store(create=True)
    plan = build_plan(loaded, PlanOptions(
        run_id=new_run_id(), store_id=store.store_id, runs_dir=engine.home.runs_dir, runner_home=engine.home.root,
        flags=flags, presets=PresetTable.load(engine.home.root / "presets.yaml"),
    ), gather_host_facts(loaded.manifest, engine.home))
    for warning in plan.warnings:
        engine.events(Notice(warning, "warning"))
    for note in plan.notes:
        engine.events(Notice(note, "note"))
    record, created = store.insert_intent(_intent(plan, loaded))
    if not created:
        return CreateResult(record, None, adopted=True)
    checkpoint("after_intent_insert")
    _write_run_dir(engine, plan, loaded)
    try:
        return CreateResult(_initialize_and_start(engine, plan, loaded, info), plan, adopted=False)
    except BaseException as exc:
        _record_failure(engine, plan, exc)
        raise


def _intent(plan: RunPlan, loaded: LoadedManifest) -> RunRecord:
    now = time.time()
    return RunRecord(
        id=plan.run_id, name=plan.run_name, status="pending", spec_hash=plan.spec_hash, created_at=now,
        updated_at=now, run_type=plan.run_type, image=plan.image.ref or "(build)",
        manifest_path=os.path.abspath(loaded.source) if loaded.source != "<stdin>" else "<stdin>",
        description=loaded.manifest.description, owner_pid=os.getpid(), owner_boot_id=owner_token(),
        details=run_details(plan),
    )


def run_details(plan: RunPlan) -> dict[str, Any]:
    """What `describe` shows about the plan (no secret values: names only)."""
    described = plan.describe()
    return {
        "resources": described["resources"],
        "env": described["container"]["env"],
        "steps": described["steps"],
        "imports": described["imports"],
        "exports": [{"target": e.target, "artifact": f"{e.kind}:{e.name}"} for e in plan.exports],
        "export_views": [{"target": e.target, "kind": e.kind, "name": e.name, "upper": str(e.view.upper_dir),
                          "base": {"kind": e.base.kind, "name": e.base.name, "version": e.base.version}
                          if e.base else None} for e in plan.exports],
        "max_runtime_s": plan.max_runtime_s,
        "grace_s": plan.container.stop_timeout_s,
        "secret_env": list(plan.secret_env),
        "termination_protection": bool(plan.entrypoint and plan.entrypoint.stay_idle),
    }


def _write_run_dir(engine: Engine, plan: RunPlan, loaded: LoadedManifest) -> None:
    engine.home.ensure_dir(engine.home.runs_dir)
    plan.run_dir.mkdir(mode=0o700, exist_ok=True)
    _write_json(plan.run_dir / "plan.json", plan.describe())
    _write_json(plan.run_dir / "manifest.json", loaded.resolved_data)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _initialize_and_start(engine: Engine, plan: RunPlan, loaded: LoadedManifest, info: EngineInfo) -> RunRecord:
    store = engine.store(create=True)
    store.update(plan.run_id, status="initializing")
    if plan.needs_gpu and not info.can_run_gpus:
        raise GpuUnavailableError(
            f"the manifest asks for {plan.gpu_count if plan.gpu_count > 0 else 'all'} GPU(s) but the engine at "
            f"{info.address} has no NVIDIA runtime (runtimes: {', '.join(info.runtimes) or 'none'})",
            hint=GPU_HINT,
        )
    backend = engine.backend()
    image = plan.image.ref
    with engine.phase(plan.run_id, "image", image or "build"):
        if plan.image.build is not None:
            from runner.builds import build_image

            # the manifest's name, not the run's: `--name` must not change the content-hash tag
            image = build_image(backend, plan.image.build, engine.events, name=loaded.manifest.name)
            store.update(plan.run_id, image=image)
        else:
            assert image is not None
            ref, credential = image, plan.image.credential_name
            ensure_image(backend, ref, lambda: registry_auth(ref, credential, engine.secrets()), engine.events)
    _abort_if_stopped(store, plan)
    with engine.phase(plan.run_id, "imports"):
        imported = prepare_imports(plan, engine.home, engine.secrets(), engine.events,
                                   plan_allows_local(loaded, plan))
    checkpoint("after_imports")
    _abort_if_stopped(store, plan)
    with engine.phase(plan.run_id, "start"):
        container_id = _start_container(engine, plan, loaded, image or "")
    return _mark_running(engine, plan, container_id, imported)


def plan_allows_local(loaded: LoadedManifest, plan: RunPlan) -> bool:
    """Local git sources passed planning only when --allow-local-sources was given."""
    from runner.plan.model import GitImport

    return any(isinstance(step, GitImport) and step.source.url.is_local for step in plan.imports)


def _abort_if_stopped(store: RunStore, plan: RunPlan) -> None:
    if store.get(plan.run_id).stop_requested:
        raise RunAbortedError("terminated while initializing")


def _start_container(engine: Engine, plan: RunPlan, loaded: LoadedManifest, image: str) -> str:
    backend = engine.backend()
    spec = replace(plan.container, image=image)
    if plan.entrypoint is not None and plan.entrypoint.exec_original:
        config = backend.image_config(image)
        spec = replace(spec, command=tuple(config.get("Entrypoint") or ()) + tuple(config.get("Cmd") or ()))
    labels = {LABEL_STORE: spec.label(LABEL_STORE) or "", LABEL_RUN_ID: plan.run_id}
    # A foreground signal waits for each request that makes an engine object (runner/interrupts.py):
    # cut short, the engine would finish the object after this command had cleaned up.
    with protected():
        for volume in spec.volumes:
            backend.create_volume(volume, {**labels, "ai.runner.managed": "true"})
    if plan.entrypoint is not None:
        write_entrypoint_dir(plan.entrypoint, plan.run_dir)
    checkpoint("before_container_create")
    with protected():
        container_id = _create_or_adopt(backend, spec, plan)
    checkpoint("after_container_create")
    try:
        with protected():
            backend.put_files(container_id, _container_files(plan, loaded))
            checkpoint("after_put_files")
            backend.start(container_id)
    except (EngineApiError, EngineNotFound) as exc:
        remove_run_objects(backend, spec.label(LABEL_STORE) or "", plan.run_id)
        raise RunFailedError(start_failure_reason(exc.engine_message),
                             hint=_start_hint(exc.engine_message)) from None
    checkpoint("after_start")
    return container_id


def _create_or_adopt(backend: DockerBackend, spec: Any, plan: RunPlan) -> str:
    try:
        return backend.create_container(spec)
    except EngineApiError as exc:
        if exc.status != 409:
            raise RunFailedError(start_failure_reason(exc.engine_message)) from None
    existing = backend.inspect(spec.name)  # a crash after create left it: adopt it if it is ours
    if existing is not None and existing.labels.get(LABEL_RUN_ID) == plan.run_id and \
            existing.labels.get(LABEL_SPEC_HASH) == plan.spec_hash:
        return existing.id
    raise RunFailedError(f"a container named {spec.name} exists and is not this run's",
                         hint="remove it with `docker rm -f` if it is a leftover")


def _container_files(plan: RunPlan, loaded: LoadedManifest) -> list[ContainerFile]:
    """Secrets only: copied into the container before it starts, never written to a host file."""
    files = []
    for name in plan.secret_env:
        if name in loaded.secrets:
            files.append(ContainerFile(f"{SECRETS_DIR}/{name}", loaded.secrets.value(name).encode(), 0o444))
    return files


def _start_hint(message: str) -> str | None:
    lowered = message.lower()
    if "port is already allocated" in lowered or "address already in use" in lowered:
        return "free the port, or set `host_port: 0` on the port to use any free one"
    if "could not select device driver" in lowered:
        return GPU_HINT
    return None


def _mark_running(engine: Engine, plan: RunPlan, container_id: str, imported: list[dict[str, Any]]) -> RunRecord:
    backend = engine.backend()
    state = backend.inspect(container_id)
    started = (state.started_at if state else None) or time.time()
    endpoints = endpoint_urls(plan, state.ports if state else {})
    checkpoint("before_state_update")
    updated = engine.store(create=True).update(
        plan.run_id, expect=("initializing",), status="running", container_id=container_id, started_at=started,
        deadline=started + plan.max_runtime_s if plan.max_runtime_s else None, endpoints=endpoints,
        merge={"phases": engine.take_phases(plan.run_id), "details": {"imported": imported}},
    )
    if updated is None:  # a terminate raced us; the reconcile of that terminate owns the run now
        return engine.store().get(plan.run_id)
    return updated


def endpoint_urls(plan: RunPlan, ports: Any) -> list[dict[str, Any]]:
    endpoints = []
    for endpoint in plan.endpoints:
        protocol = "udp" if endpoint.type == "udp" else "tcp"
        host_ip, host_port = ports.get(f"{endpoint.container_port}/{protocol}", (endpoint.host_ip, endpoint.host_port))
        shown_ip = host_ip if host_ip not in ("", "0.0.0.0") else "127.0.0.1"  # noqa: S104 - a comparison
        scheme = "http" if endpoint.type == "http" else endpoint.type
        endpoints.append({
            "name": endpoint.name, "type": endpoint.type, "container_port": endpoint.container_port,
            "host_ip": host_ip, "host_port": host_port,
            "url": f"{scheme}://{shown_ip}:{host_port}" if host_port else None,
            "health_path": endpoint.health_path, "ready": False,
        })
    return endpoints


def _record_failure(engine: Engine, plan: RunPlan, exc: BaseException) -> None:
    """Any failure during create ends the run with a reason; nothing of it stays in the engine."""
    store = engine.store(create=True)
    record = store.get(plan.run_id)
    if record.is_terminal or record.status == "running":
        return
    if isinstance(exc, (RunAbortedError, KeyboardInterrupt)):
        status, reason = "terminated", ("terminated while initializing" if isinstance(exc, RunAbortedError)
                                        else "interrupted while creating")
    elif isinstance(exc, GpuUnavailableError):
        status, reason = "failed", "GPU unavailable"
    elif isinstance(exc, ImportFailedError):
        status, reason = "failed", f"import failed: {exc.message}"
    elif isinstance(exc, RunnerError):
        status, reason = "failed", exc.message
    else:
        status, reason = "failed", f"internal error ({type(exc).__name__})"
    with contextlib.suppress(EngineError):  # if the engine is gone, reconcile and gc find them by label
        remove_run_objects(engine.backend(), store.store_id, plan.run_id)
    store.update(plan.run_id, status=status, reason=reason, finished_at=time.time(),
                 merge={"phases": engine.take_phases(plan.run_id)})
    for scratch in ("imports", "volumes"):  # a failed import's checkout is of no use to anyone
        shutil.rmtree(plan.run_dir / scratch, ignore_errors=True)
