"""The `runner` console script: the CLI is imported inside the interrupt handling, so a Ctrl-C that lands
while Python is still loading click and the commands exits 130 with one line, not a traceback."""

from __future__ import annotations

import sys

INTERRUPTED = 130  # ExitCode.INTERRUPTED, without importing runner.errors before the handler is in place


def main() -> int:
    try:
        from runner.cli.main import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return INTERRUPTED
    return cli_main()
