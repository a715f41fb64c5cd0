"""Jinja2 manifest templates (VESSL's hyper-parameter example renders `{{ lr }}` client-side).

A manifest containing `{{`, `{%` or `{#` is rendered before parsing, with `--var NAME=VALUE`
values only: no environment, no secrets. The jinja2 sandbox stops attribute walks but bounds
neither CPU nor memory, so this module adds the bounds: an immutable sandbox, StrictUndefined, an
allow-list of filters and string methods, a shared iteration budget for `range`, size checks on
`*`/`**`, a streaming output cap and (in the main thread) a wall-clock limit.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from runner.manifest.problems import ManifestError, Position, Problem

MAX_OUTPUT_CHARS = 256 * 1024
MAX_ITERATIONS = 10_000
RENDER_TIMEOUT_S = 2.0
TEMPLATE_NAME = "<manifest>"

_MARKERS = ("{{", "{%", "{#")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALLOWED_FILTERS = frozenset({
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "join", "last", "length", "list",
    "lower", "max", "min", "reverse", "round", "sort", "string", "sum", "title", "tojson", "trim", "truncate",
    "unique", "upper",
})
_ALLOWED_STR_METHODS = frozenset({
    "lower", "upper", "title", "capitalize", "strip", "lstrip", "rstrip", "split", "startswith", "endswith",
    "isdigit", "isalpha", "isalnum", "islower", "isupper",
})


class _TemplateLimitError(Exception):
    """A bound of this module was hit; the message says which."""


def is_template(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def parse_variables(assignments: Sequence[str]) -> dict[str, Any]:
    """`--var lr=0.01 --var name=x` → {"lr": 0.01, "name": "x"}; numbers and true/false typed."""
    result: dict[str, Any] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        if not sep or not _VAR_NAME.match(name):
            raise ManifestError("--var", [Problem(
                (), f"expected NAME=VALUE, got {item.split('=')[0]!r}…",
                hint="e.g. --var lr=0.001 (NAME is letters, digits and _)")])
        result[name] = _typed(raw)
    return result


def _typed(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            continue
    return raw


def render_manifest_template(text: str, variables: Mapping[str, Any], source: str) -> str:
    """Render `text` in the bounded sandbox; every failure is a located ManifestError."""
    from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError

    env = _sandbox(StrictUndefined)
    try:
        code = env.compile(text, name=TEMPLATE_NAME, filename=TEMPLATE_NAME)
        template = env.template_class.from_code(env, code, env.make_globals(None), None)
        with _deadline(RENDER_TIMEOUT_S):
            return _render_capped(template.generate(dict(variables)))
    except TemplateSyntaxError as exc:
        raise _problem(source, f"template syntax error: {exc.message}", exc.lineno) from None
    except TemplateError as exc:
        raise _problem(source, _describe(exc), _template_line(exc.__traceback__),
                       hint=_hint(exc)) from None
    except (_TemplateLimitError, OverflowError, RecursionError, MemoryError) as exc:
        raise _problem(source, f"template refused: {exc}", _template_line(exc.__traceback__)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise _problem(source, f"template error: {type(exc).__name__}: {exc}",
                       _template_line(exc.__traceback__)) from None


def _render_capped(chunks: Iterator[str]) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise _TemplateLimitError(f"output exceeds {MAX_OUTPUT_CHARS} characters")
        out.append(chunk)
    return "".join(out)


def _problem(source: str, message: str, line: int | None, hint: str | None = None) -> ManifestError:
    position = Position(line, 1) if line else None
    return ManifestError(source, [Problem((), message, hint=hint, position=position)])


def _describe(exc: Exception) -> str:
    from jinja2 import UndefinedError
    from jinja2.exceptions import SecurityError

    if isinstance(exc, UndefinedError):
        name = _undefined_name(exc)
        return f"template variable {name} is not defined" if name else f"template error: {exc}"
    if isinstance(exc, SecurityError):
        return f"template refused by the sandbox: {exc}"
    return f"template error: {exc}"


def _hint(exc: Exception) -> str | None:
    from jinja2 import UndefinedError

    name = _undefined_name(exc)
    if isinstance(exc, UndefinedError) and name:
        return f"pass it on the command line: --var {name}=VALUE"
    return None


def _undefined_name(exc: Exception) -> str | None:
    match = re.search(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined", str(exc))
    return match.group(1) if match else None


def _template_line(tb: TracebackType | None) -> int | None:
    """jinja2 rewrites tracebacks so template frames carry the template's own line numbers."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _sandbox(undefined: type[Any]) -> Any:
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    budget = {"left": MAX_ITERATIONS}

    def bounded_range(*args: int) -> range:
        result = range(*args)
        budget["left"] -= len(result)
        if budget["left"] < 0:
            raise _TemplateLimitError(f"loops exceed {MAX_ITERATIONS} iterations")
        return result

    class ManifestSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            owner = getattr(__obj, "__self__", None)
            name = getattr(__obj, "__name__", "")
            if isinstance(owner, str) and name not in _ALLOWED_STR_METHODS:
                raise SecurityError(f"str.{name}() is not allowed in manifest templates")
            if owner is not None and not isinstance(owner, str) and __obj is not bounded_range:
                raise SecurityError(f"calling {type(owner).__name__}.{name}() is not allowed")
            return super().call(__context, __obj, *args, **kwargs)

    env = ManifestSandbox(undefined=undefined, autoescape=False, keep_trailing_newline=True)
    env.filters = {name: _guard(f) for name, f in env.filters.items() if name in _ALLOWED_FILTERS}
    env.globals = {"range": bounded_range}
    return env


def _guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse filter calls whose arguments could make huge output (e.g. truncate(10**9))."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
                raise _TemplateLimitError("a filter argument is too large")
        return func(*args, **kwargs)

    for attribute in ("jinja_pass_arg",):
        if hasattr(func, attribute):
            setattr(guarded, attribute, getattr(func, attribute))
    return guarded


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        repeats = isinstance(sized, (str, list, tuple)) and isinstance(count, int)
        if repeats and len(sized) * max(count, 0) > MAX_OUTPUT_CHARS:
            raise _TemplateLimitError("a repetition would exceed the output limit")
    elif operator == "**" and _huge_power(left, right):
        raise _TemplateLimitError("an exponent is too large")


def _huge_power(base: Any, exponent: Any) -> bool:
    numbers = isinstance(base, (int, float)) and isinstance(exponent, (int, float))
    return numbers and abs(exponent) > 64 and abs(base) > 1


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """A wall-clock limit via SIGALRM; only possible in the main thread (the CLI's case)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _TemplateLimitError(f"rendering took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
