"""`runner validate`: load and check a manifest; write nothing anywhere."""

from __future__ import annotations

import click

from runner.cli.common import build_request, echo_json, manifest_options
from runner.manifest.model import Manifest
from runner.manifest.pipeline import load_manifest
from runner.manifest.problems import ManifestError, format_problem


@click.command()
@manifest_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(path: str, env: tuple[str, ...], env_file: str | None, template_vars: tuple[str, ...],
             as_json: bool) -> int:
    """Check a manifest and explain every problem (FILE:LINE:COL: path: message).

    Placeholders and secrets without a value are warnings here; `create` needs them.
    """
    request = build_request(path, env, env_file, template_vars, strict=False)
    try:
        loaded = load_manifest(request)
    except ManifestError as error:
        if not as_json:
            raise
        echo_json({"file": error.source, "valid": False,
                   "problems": [p.to_json(error.source) for p in error.problems]})
        return int(error.exit_code)
    if as_json:
        echo_json({"file": loaded.source, "valid": True, "name": loaded.manifest.name,
                   "type": loaded.manifest.run_type,
                   "problems": [p.to_json(loaded.source) for p in loaded.warnings]})
        return 0
    for warning in loaded.warnings:
        click.echo(format_problem(loaded.source, warning), err=True)
    click.echo(f"{loaded.source}: valid — {summary(loaded.manifest)}")
    return 0


def summary(manifest: Manifest) -> str:
    build = manifest.image.build
    image = f"image built from {build.context or 'setup commands'}" if build else f"image {manifest.image.ref}"
    parts = [f"{manifest.run_type} run {manifest.name!r}", image]
    if manifest.steps:
        parts.append(f"{len(manifest.steps)} step{'s' if len(manifest.steps) != 1 else ''}")
    if manifest.ports:
        parts.append("ports " + ", ".join(f"{p.name}:{p.port}" for p in manifest.ports))
    if manifest.imports:
        parts.append(f"{len(manifest.imports)} import{'s' if len(manifest.imports) != 1 else ''}")
    if manifest.exports:
        parts.append(f"{len(manifest.exports)} export{'s' if len(manifest.exports) != 1 else ''}")
    return ", ".join(parts)
