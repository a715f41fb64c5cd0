"""`runner` entry point: the command group, lazy command loading, and the one place errors become exit codes.

Commands are imported only when invoked, so `runner --help` and `runner validate` don't pay for
docker-py, GitPython or rich. Every `RunnerError` is rendered as a message plus hint and mapped
to its exit code (0 ok · 1 run failed · 2 manifest/usage · 3 engine · 4 policy · 130 interrupted);
a traceback appears only with `--debug`.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from runner import __version__
from runner.errors import ExitCode, RunnerError

# name → (module, attribute, one-line help shown by `runner --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("runner.cli.validate_cmd", "validate", "Check a manifest and explain every problem."),
    "create": ("runner.cli.create_cmd", "create", "Create a run from a manifest (or --dry-run the plan)."),
    "list": ("runner.cli.runs_cmd", "list_runs", "List runs with status and endpoints."),
    "describe": ("runner.cli.runs_cmd", "describe", "Show everything about one run."),
    "logs": ("runner.cli.logs_cmd", "logs", "Print (or follow) a run's logs."),
    "terminate": ("runner.cli.runs_cmd", "terminate", "Stop runs gracefully and export their outputs."),
    "gc": ("runner.cli.runs_cmd", "gc", "Remove leftovers that belong to no live run."),
    "secret": ("runner.cli.secret_cmd", "secret", "Manage local secrets (values never printed)."),
    "artifact": ("runner.cli.artifact_cmd", "artifact", "Manage local artifacts (model caches, outputs)."),
    "build": ("runner.cli.build_cmd", "build", "Build a manifest's image so runs start fast."),
    "exporter": ("runner.cli.exporter_cmd", "exporter", "Serve runner's own Prometheus metrics."),
}

EPILOG = """\b
Examples:
  runner validate -f manifests/vllm-run.yaml
  runner create -f manifests/http-server.yaml --wait
  runner create -f vllm-run.yaml --dry-run --env API_KEY=...
  runner list
  runner logs RUN_ID --follow
  runner terminate RUN_ID

Exit codes: 0 ok, 1 run failed, 2 manifest or usage error, 3 Docker error,
4 refused by policy, 130 interrupted.
"""

_state = {"debug": False}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="runner")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Run VESSL-Run-style manifests (vLLM + Prometheus servers, training jobs) on your own Docker engine."""
    _state["debug"] = debug


def _print_error(error: RunnerError) -> None:
    from runner.manifest.problems import ManifestError

    if isinstance(error, ManifestError):
        click.echo(f"error: {error.message}", err=True)
        for line in error.report_lines():
            click.echo(line, err=True)
        return
    click.echo(f"error: {error.message}", err=True)
    if error.hint:
        click.echo(f"  hint: {error.hint}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    try:
        result: Any = cli.main(args=args, prog_name="runner", standalone_mode=False)
    except RunnerError as error:
        if _state["debug"]:
            traceback.print_exc()
        _print_error(error)
        return int(error.exit_code)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as error:
        error.show()
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return 0
    except Exception as error:  # a bug: say so without echoing data that might be sensitive
        if _state["debug"]:
            traceback.print_exc()
        click.echo(f"internal error ({type(error).__name__}); rerun with --debug for the traceback", err=True)
        return int(ExitCode.RUN_FAILED)
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
