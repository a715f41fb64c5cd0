"""Where one runner command spends its time: `python -m benchmarks.trace [--profile N] -- ARGS…`.

Runs `runner ARGS…` in this process (use RUNNER_HOME to pick the state) and prints, in order,
every engine API request with its duration, every run-store write transaction (each one is a
commit, and with `synchronous=FULL` an fsync), every subprocess (git), then the split between
importing runner's CLI and the command itself, and which heavy packages the command pulled in.
The probes are installed when runner imports the modules they wrap (an import hook), so the
tracer itself imports none of them and the module list is the command's own.
A diagnostic for the numbers in docs/performance.md, not part of the measured suite.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

HEAVY = ("jsonschema", "yaml", "docker", "requests", "http.client", "tarfile", "subprocess", "git",
         "huggingface_hub", "rich", "runner.manifest.pipeline", "runner.plan.build", "runner.engine.create",
         "runner.artifacts")
_HEX_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Event:
    start: float
    seconds: float
    kind: str
    what: str


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs `patches[name](module)` right after `name` is first imported."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self._patches = patches

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        patch = self._patches.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                loader: Any = spec.loader
                loader.exec_module = _then(loader.exec_module, patch)  # this loader instance serves only this spec
                return spec
        return None


def _then(execute: Callable[[ModuleType], None], patch: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
    def exec_module(module: ModuleType) -> None:
        execute(module)
        patch(module)

    return exec_module


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trace", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="also print the top N functions "
                        "by cumulative time (cProfile)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="runner arguments (after --)")
    options = parser.parse_args(argv)
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    events: list[Event] = []
    started = time.perf_counter()
    with _probes(events, started):
        from runner.cli.main import main as runner_main

        imported = time.perf_counter()
        profiler: Any = None
        if options.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        try:
            code = runner_main(args)
        finally:
            if profiler is not None:
                profiler.disable()
        done = time.perf_counter()
    _print(events, started, imported, done, code)
    if profiler is not None:
        import pstats

        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(options.profile)
    return 0


@contextlib.contextmanager
def _probes(events: list[Event], origin: float) -> Iterator[None]:
    def record(start: float, kind: str, what: str) -> None:
        events.append(Event(start - origin, time.perf_counter() - start, kind, what))

    def transport(module: ModuleType) -> None:
        original = module.SocketTransport.request

        def request(self: Any, method: str, path: str, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(self, method, path, **kwargs)
            finally:
                record(started, f"API {method}", _HEX_ID.sub(lambda m: m.group(0)[:12], path)[:90])

        module.SocketTransport.request = request

    def store(module: ModuleType) -> None:
        original = module.RunStore._write

        @contextlib.contextmanager
        def write(self: Any, conn: Any = None) -> Iterator[Any]:
            started = time.perf_counter()
            with original(self, conn) as handle:
                yield handle
            record(started, "SQLite", "write transaction")

        module.RunStore._write = write

    def subprocesses(module: ModuleType) -> None:
        original_init, original_wait = module.Popen.__init__, module.Popen.wait

        def init(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
            self._trace_start = time.perf_counter()
            original_init(self, args, *rest, **kwargs)

        def wait(self: Any, timeout: float | None = None) -> Any:
            code = original_wait(self, timeout)
            if getattr(self, "_trace_start", None) is not None:
                record(self._trace_start, "exec", _command(self.args)[:90])
                self._trace_start = None
            return code

        module.Popen.__init__, module.Popen.wait = init, wait

    patches: dict[str, Callable[[ModuleType], None]] = {
        "runner.backends.transport": transport, "runner.store": store, "subprocess": subprocesses}
    for name, patch in list(patches.items()):
        if name in sys.modules:  # imported before we got here (subprocess, by the interpreter's site)
            patch(sys.modules[name])
            del patches[name]
    hook = _PatchOnImport(patches)
    sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        sys.meta_path.remove(hook)


def _command(args: Any) -> str:
    """argv without git's `-c key=value` pairs, which would hide the subcommand."""
    if not isinstance(args, (list, tuple)):
        return str(args)
    shown, skip = [], False
    for arg in map(str, args):
        if skip:
            skip = False
        elif arg == "-c":
            skip = True
        else:
            shown.append(arg)
    return " ".join(shown)


def _print(events: list[Event], started: float, imported: float, done: float, code: int) -> None:
    out = sys.stderr
    print("\n   at (ms)  took (ms)  what", file=out)
    for event in sorted(events, key=lambda e: e.start):
        print(f"  {event.start * 1000:8.1f}  {event.seconds * 1000:9.1f}  {event.kind:<10} {event.what}", file=out)
    api = [e for e in events if e.kind.startswith("API")]
    writes = [e for e in events if e.kind == "SQLite"]
    print(f"\nexit {code}; import runner.cli.main {1000 * (imported - started):.0f} ms, command "
          f"{1000 * (done - imported):.0f} ms; {len(api)} engine requests ({1000 * sum(e.seconds for e in api):.0f} ms)"
          f", {len(writes)} store write transactions ({1000 * sum(e.seconds for e in writes):.0f} ms), "
          f"{sum(1 for e in events if e.kind == 'exec')} subprocesses", file=out)
    loaded = [name for name in HEAVY if name in sys.modules]
    print(f"heavy modules loaded: {', '.join(loaded) or 'none'}; {len(sys.modules)} modules in total", file=out)


if __name__ == "__main__":
    raise SystemExit(main())
