"""`runner create`: run a manifest on the local engine, or `--dry-run` to print the plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from runner.cli.common import build_request, echo_json, manifest_options
from runner.home import RunnerHome
from runner.manifest.pipeline import ManifestRequest, load_manifest
from runner.manifest.problems import format_problem

if TYPE_CHECKING:
    from runner.plan.build import RunFlags


@click.command()
@manifest_options
@click.option("--name", "run_name", metavar="NAME", help="Run name (default: the manifest's name).")
@click.option("--wait", is_flag=True, help="Block until every http port answers (or the run ends).")
@click.option("--timeout", type=float, default=None, metavar="S", help="With --wait: give up after S seconds.")
@click.option("--gpus", type=click.IntRange(min=-1), default=None, metavar="N",
              help="Override the GPU count (0 runs a GPU manifest without GPUs; -1 = all).")
@click.option("--allow-local-sources", is_flag=True, help="Allow file:// and local-path git imports.")
@click.option("--allow-host-path", "allow_host_paths", multiple=True, metavar="PATH",
              help="Allow mounting this sensitive host path (repeatable).")
@click.option("--publish-all-interfaces", is_flag=True, help="Allow ports with a non-loopback host_ip.")
@click.option("--grace", type=float, default=10.0, show_default=True, metavar="S",
              help="Seconds between SIGTERM and SIGKILL when the run is stopped.")
@click.option("--dry-run", is_flag=True, help="Print the plan; create nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(path: str, env: tuple[str, ...], env_file: str | None, template_vars: tuple[str, ...],
           run_name: str | None, wait: bool, timeout: float | None, gpus: int | None,
           allow_local_sources: bool, allow_host_paths: tuple[str, ...], publish_all_interfaces: bool,
           grace: float, dry_run: bool, as_json: bool) -> int:
    """Create a run from a manifest.

    \b
    Examples:
      runner create -f manifests/http-server.yaml --wait
      runner create -f vllm-run.yaml --env API_KEY=... --gpus 1
      runner create -f train.yaml --dry-run --json
    """
    from runner.plan.build import RunFlags

    flags = RunFlags(run_name=run_name, gpus_override=gpus, allow_local_sources=allow_local_sources,
                     allow_host_paths=allow_host_paths, publish_all_interfaces=publish_all_interfaces,
                     grace_s=grace)
    if dry_run:
        return _dry_run(build_request(path, env, env_file, template_vars, strict=True), flags, as_json)
    from runner.cli.run_create import create_run

    request = build_request(path, env, env_file, template_vars, strict=True, read_secret_values=True)
    return create_run(request, flags, wait=wait, timeout=timeout, as_json=as_json)


def _dry_run(request: ManifestRequest, flags: RunFlags, as_json: bool) -> int:
    from runner.facts import gather_host_facts
    from runner.ids import new_run_id
    from runner.plan.build import PlanOptions, build_plan
    from runner.presets import PresetTable

    home = RunnerHome.from_env()
    loaded = load_manifest(request)
    plan = build_plan(loaded, PlanOptions(
        run_id=new_run_id(), store_id="(dry-run)", runs_dir=home.runs_dir, runner_home=home.root,
        flags=flags, presets=PresetTable.load(home.root / "presets.yaml"),
    ), gather_host_facts(loaded.manifest, home))
    described = plan.describe()
    if as_json:
        echo_json({"dry_run": True, **described})
        return 0
    for warning in loaded.warnings:
        click.echo(format_problem(loaded.source, warning), err=True)
    for line in plan_lines(described):
        click.echo(line)
    return 0


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The plan as a short human-readable report."""
    run = plan["run"]
    lines = [f"Plan for {run['type']} run {run['name']!r} (dry run: nothing created)"]

    def row(label: str, values: list[str]) -> None:
        for index, value in enumerate(values or ["—"]):
            lines.append(f"  {label if index == 0 else '':<10} {value}")

    image = plan["image"]
    row("image", [f"{image['ref']}: {image['action']}"])
    res = plan["resources"]
    row("resources", [", ".join(part for part in (
        f"{res['cpus']:g} CPUs" if res["cpus"] else "no CPU limit",
        f"{res['memory']} memory" if res["memory"] else "no memory limit",
        f"{res['gpus']} GPU(s)" if res["gpus"] else "no GPU",
        f"shm {res['shm_size']}" if res["shm_size"] else "",
    ) if part)])
    row("imports", [_import_line(item) for item in plan["imports"]])
    row("steps", [_step_line(n, step) for n, step in enumerate(plan["steps"], start=1)])
    row("ports", [f"{p['name']} {p['container_port']}/{p['type']} → {p['host']}" for p in plan["ports"]])
    container = plan["container"]
    row("env", [f"{k}={_short(v)}" for k, v in container["env"].items() if not k.startswith(("RUNNER_", "TINI_"))])
    row("exports", [f"{e['target']} → {e['to']} (new version)" for e in plan["exports"]])
    row("container", [f"{container['name']}, init, stop timeout {container['stop_timeout_s']}s, "
                      f"logs {container['logs']['max_files']}×{container['logs']['max_size']}"])
    for warning in plan["warnings"]:
        lines.append(f"  warning: {warning}")
    for note in plan.get("notes", []):
        lines.append(f"  note: {note}")
    return lines


def _import_line(item: dict[str, Any]) -> str:
    if "git" in item:
        return f"{item['target']} ← git {item['git']} @ {item['ref']}"
    if "artifact" in item:
        return f"{item['target']} ← {item['artifact']} version {item['version']} ({item['view']})"
    return f"{item['target']} ← {item['huggingface']} @ {item['revision']} ({item['view']})"


def _step_line(number: int, step: dict[str, Any]) -> str:
    if "wait" in step:
        return f"{number}. wait {step['wait']}"
    if "then" in step:
        return f"then {step['then']}"
    first = step["command"].strip().splitlines()[0] if step["command"].strip() else "(empty)"
    more = " …" if len(step["command"].strip().splitlines()) > 1 else ""
    where = f"[{step['workdir']}] " if step.get("workdir") else ""
    return f"{number}. {where}{_short(first, 70)}{more}"


def _short(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
