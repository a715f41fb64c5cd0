"""Options and helpers shared by commands: manifest inputs (--env/--env-file/--var), JSON output."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from runner.errors import UsageError
from runner.home import RunnerHome

if TYPE_CHECKING:
    from runner.manifest.pipeline import ManifestRequest

F = TypeVar("F", bound=Callable[..., Any])
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def manifest_options(func: F) -> F:
    """-f FILE, --env K=V (repeatable), --env-file F, --var K=V (repeatable)."""
    decorators = [
        click.option("-f", "--file", "path", required=True, metavar="FILE",
                     help="The manifest (YAML); `-` reads stdin."),
        click.option("--env", "env", multiple=True, metavar="K=V",
                     help="Value for ${K} and {K} placeholders (highest priority)."),
        click.option("--env-file", "env_file", metavar="FILE",
                     help="Variables file (default: .env beside the manifest)."),
        click.option("--var", "template_vars", multiple=True, metavar="K=V",
                     help="Jinja2 template variable, for manifests with {{ … }}."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def parse_env_assignments(items: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise UsageError(f"--env expects NAME=VALUE, got {name!r}…", hint="e.g. --env API_KEY=abc")
        values[name] = value
    return values


def build_request(path: str, env: Sequence[str], env_file: str | None, template_vars: Sequence[str], *,
                  strict: bool, read_secret_values: bool = False) -> ManifestRequest:
    from runner.manifest.pipeline import ManifestRequest
    from runner.manifest.template import parse_variables
    from runner.secrets import SecretStore

    return ManifestRequest(
        path=path,
        env_overrides=parse_env_assignments(env),
        env_file=env_file,
        template_vars=parse_variables(template_vars),
        process_env=dict(os.environ),
        secret_store=SecretStore(RunnerHome.from_env()),
        read_secret_values=read_secret_values,
        strict=strict,
    )


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
