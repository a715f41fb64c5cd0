"""`runner secret set|list|rm`: the local secret store. Values are read from stdin, never printed."""

from __future__ import annotations

import sys
import time

import click

from runner.cli.common import echo_json
from runner.home import RunnerHome
from runner.secrets import SecretStore


@click.group()
def secret() -> None:
    """Manage local secrets referenced as {secret: NAME} or {NAME} placeholders."""


def _store() -> SecretStore:
    return SecretStore(RunnerHome.from_env())


@secret.command("set")
@click.argument("name")
def set_secret(name: str) -> int:
    """Store NAME's value, read from stdin (a prompt without echo on a terminal).

    \b
    Examples:
      printf %s "$HF_TOKEN" | runner secret set HF_TOKEN
      runner secret set API_KEY        # prompts
    """
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value for {name}: ")
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):  # `echo x |` adds one; a secret never ends in a newline by intent
            value = value[:-1]
    _store().set(name, value)
    click.echo(f"stored secret {name}")
    return 0


@secret.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_secrets(as_json: bool) -> int:
    """List secret names (never values)."""
    infos = _store().list()
    if as_json:
        echo_json([{"name": i.name, "updated": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(i.updated))}
                   for i in infos])
        return 0
    if not infos:
        click.echo("no secrets; add one with: printf %s VALUE | runner secret set NAME")
        return 0
    width = max(len(i.name) for i in infos)
    click.echo(f"{'NAME':<{width}}  UPDATED")
    for info in infos:
        click.echo(f"{info.name:<{width}}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.updated))}")
    return 0


@secret.command("rm")
@click.argument("names", nargs=-1, required=True)
def remove_secret(names: tuple[str, ...]) -> int:
    """Delete secrets."""
    store = _store()
    for name in names:
        store.remove(name)
        click.echo(f"removed secret {name}")
    return 0


@secret.command("path")
@click.argument("name")
def secret_path(name: str) -> int:
    """Print the file that holds NAME's value (not the value), e.g. for `$(cat "$(runner secret path NAME)")`."""
    click.echo(str(_store().path(name)))
    return 0
