"""`runner build`: build a manifest's `image.build` now, so `create` starts without building."""

from __future__ import annotations

import click

from runner.cli.common import build_request, echo_json, manifest_options
from runner.cli.render import EventPrinter
from runner.errors import UsageError
from runner.manifest.pipeline import load_manifest


@click.command()
@manifest_options
@click.option("-t", "--tag", metavar="TAG", help="Tag the image (default: image.build.tag, else a content-hash tag).")
@click.option("--force", is_flag=True, help="Build even when an image with the same content hash exists.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def build(path: str, env: tuple[str, ...], env_file: str | None, template_vars: tuple[str, ...], tag: str | None,
          force: bool, as_json: bool) -> int:
    """Build the image a manifest declares under image.build (context + Dockerfile, or setup commands).

    \b
    Skipped when nothing changed: the tag carries a hash of the Dockerfile, the build args
    and every file of the context.
    \b
    Examples:
      runner build -f manifests/vllm-run-custom.yaml
      runner build -f train.yaml -t my/train:1
    """
    from runner.backends.docker import DockerBackend
    from runner.builds import build_or_skip
    from runner.plan.build import image_plan

    loaded = load_manifest(build_request(path, env, env_file, template_vars, strict=False))
    plan = image_plan(loaded.manifest)
    if plan.build is None:
        raise UsageError(f"{loaded.source} has no image.build to build",
                         hint="add image.build.context (+ dockerfile) or image.build.setup (with image.url as base)")
    outcome = build_or_skip(DockerBackend(), plan.build, EventPrinter(quiet=as_json), name=loaded.manifest.name,
                            tag=tag, force=force)
    if as_json:
        echo_json({"image": outcome.ref, "built": not outcome.skipped})
    else:
        click.echo(f"{outcome.ref} (up to date, not rebuilt)" if outcome.skipped else f"built {outcome.ref}")
    return 0
