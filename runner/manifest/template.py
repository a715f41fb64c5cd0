"""Jinja2 manifest templates (VESSL's hyper-parameter example renders `{{ lr }}` client-side).

A manifest containing `{{`, `{%` or `{#` is rendered before parsing, with `--var NAME=VALUE`
values only: no environment, no secrets. The jinja2 sandbox stops attribute walks but bounds
neither CPU nor memory, so this module adds the bounds: an immutable sandbox, StrictUndefined, an
allow-list of filters and string methods (no `str.format`), and a per-render `_Budget`: `range`
lengths, loop iterations and calls are counted; every operation that builds text or lists (`*`,
`+`, `%`, `~`, `**`, filters, `{{ }}` output, captured blocks) is size-checked *before* it
allocates and charged to a total; the output is capped while streaming; and (in the main thread)
a wall-clock limit backs it all up.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from runner.manifest.problems import ManifestError, Position, Problem

MAX_OUTPUT_CHARS = 256 * 1024  # the rendered manifest, and any single value built on the way
MAX_WORK_CHARS = 4 * MAX_OUTPUT_CHARS  # characters and list items built in total by one render
MAX_ITERATIONS = 10_000  # summed lengths of range() calls
MAX_STEPS = 20_000  # loop iterations, calls and filter uses
MACRO_CALL_STEPS = 10  # a macro call costs as much as ~10 loop iterations
MAX_INT_BITS = 4096
RENDER_TIMEOUT_S = 2.0
TEMPLATE_NAME = "<manifest>"
_LOOP_GUARD = "_runner_loop"
_CONCAT = "_runner_concat"
# `%` conversion specs: optional (key), flags, width, .precision, length modifier, type.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)

# `{#` (a Jinja comment) is not a marker: shell commands use `${#VAR}` (string length) all the time
_MARKERS = ("{{", "{%")
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


class _Budget:
    """What one render may still spend; every `take_*` raises `_TemplateLimitError` when exhausted."""

    def __init__(self) -> None:
        self.ranges = MAX_ITERATIONS
        self.steps = MAX_STEPS
        self.work = MAX_WORK_CHARS

    def take_range(self, count: int) -> None:
        self.ranges -= count
        if self.ranges < 0:
            raise _TemplateLimitError(f"loops exceed {MAX_ITERATIONS} iterations")

    def take_steps(self, count: int = 1) -> None:
        self.steps -= count
        if self.steps < 0:
            raise _TemplateLimitError(f"loops and calls exceed {MAX_STEPS} steps")

    def take_work(self, size: int) -> None:
        """Charge a value about to be built; refuse one bigger than the output limit."""
        if size > MAX_OUTPUT_CHARS:
            raise _TemplateLimitError("a value would exceed the output limit")
        self.work -= size
        if self.work < 0:
            raise _TemplateLimitError(f"the template builds more than {MAX_WORK_CHARS} characters in total")

    def weigh(self, value: Any) -> int:
        """Charge (and return) the size of `value` as text."""
        size = _weight(value, min(self.work, MAX_OUTPUT_CHARS) + 1)
        self.take_work(size)
        return size


def _weight(value: Any, limit: int) -> int:
    """Roughly how many characters `str(value)` takes; counting stops past `limit`, so it costs O(limit)
    even for lists that share their elements many times over."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset, dict)):
            total += 2 + 4 * len(item)  # brackets; quotes and ", " per element
            if total <= limit:
                stack.extend(item)
                if isinstance(item, dict):
                    stack.extend(item.values())
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        else:
            total += 8
    return total


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
        tree = _bound_tree(env.parse(text, name=TEMPLATE_NAME, filename=TEMPLATE_NAME))
        code = env.compile(tree, name=TEMPLATE_NAME, filename=TEMPLATE_NAME)
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
    from jinja2.runtime import Macro
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    budget = _Budget()

    def bounded_range(*args: int) -> range:
        result = range(*args)
        budget.take_range(len(result))
        return result

    def loop_guard(iterable: Any) -> Any:
        if isinstance(iterable, Sized):
            budget.take_steps(len(iterable))
            return iterable
        return _counted(iterable, budget)

    def bounded_concat(*values: Any) -> str:
        for value in values:
            budget.weigh(value)
        return "".join(map(str, values))

    def bounded_join(parts: Iterable[str]) -> str:
        items = list(parts)
        budget.take_work(sum(len(item) for item in items))
        return "".join(items)

    def finalize(value: Any) -> Any:
        budget.weigh(value)
        return value

    internal = (bounded_range, loop_guard, bounded_concat)

    class ManifestSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})
        concat = staticmethod(bounded_join)  # joins captured blocks: macros, {% set %}…{% endset %}, {% filter %}

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right, budget)
            return super().call_binop(context, operator, left, right)

        def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
            # jinja2 hands out a sandboxed str.format; it still pads to any width ('{:>999999999}').
            if super().wrap_str_format(value) is None:
                return None

            def refuse(*args: Any, **kwargs: Any) -> str:
                raise SecurityError(f"str.{value.__name__}() is not allowed in manifest templates")

            return refuse

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            owner = getattr(__obj, "__self__", None)
            name = getattr(__obj, "__name__", "")
            if isinstance(owner, str) and name not in _ALLOWED_STR_METHODS:
                raise SecurityError(f"str.{name}() is not allowed in manifest templates")
            if owner is not None and not isinstance(owner, str):
                raise SecurityError(f"calling {type(owner).__name__}.{name}() is not allowed")
            if __obj not in internal:
                budget.take_steps(MACRO_CALL_STEPS if isinstance(__obj, Macro) else 1)
            if isinstance(owner, str):
                budget.take_work(len(owner))
            return super().call(__context, __obj, *args, **kwargs)

    env = ManifestSandbox(undefined=undefined, autoescape=False, keep_trailing_newline=True, finalize=finalize)
    env.filters = {name: _guard(name, f, budget) for name, f in env.filters.items() if name in _ALLOWED_FILTERS}
    env.globals = {"range": bounded_range, _LOOP_GUARD: loop_guard, _CONCAT: bounded_concat}
    return env


def _counted(iterable: Iterable[Any], budget: _Budget) -> Iterator[Any]:
    for item in iterable:
        budget.take_steps()
        yield item


def _bound_tree(tree: Any) -> Any:
    """Route every loop through the step budget and every `~` through the size check."""
    from jinja2 import nodes
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.visitor import NodeTransformer

    def guarded_call(name: str, args: list[Any], lineno: int) -> Any:
        return nodes.Call(nodes.Name(name, "load", lineno=lineno), args, [], None, None, lineno=lineno)

    class Bounds(NodeTransformer):
        def visit_For(self, node: Any) -> Any:
            if node.recursive:
                raise TemplateSyntaxError("recursive loops are not allowed in manifest templates", node.lineno,
                                          TEMPLATE_NAME, TEMPLATE_NAME)
            node = self.generic_visit(node)
            node.iter = guarded_call(_LOOP_GUARD, [node.iter], node.lineno)
            return node

        def visit_Concat(self, node: Any) -> Any:
            node = self.generic_visit(node)
            return guarded_call(_CONCAT, list(node.nodes), node.lineno)

    bounded = Bounds().visit(tree)
    bounded.set_environment(tree.environment)
    return bounded


def _guard(name: str, func: Callable[..., Any], budget: _Budget) -> Callable[..., Any]:
    """Charge a filter's input to the budget and refuse arguments that could make huge output
    (e.g. truncate(10**9), or a join whose separator repeats a long string)."""
    from jinja2 import Undefined

    offset = 1 if hasattr(func, "jinja_pass_arg") else 0
    takes_undefined = name in ("default", "d")

    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget.take_steps()
        for value in args[offset:] if not takes_undefined else ():
            if isinstance(value, Undefined):
                str(value)  # StrictUndefined raises "'lr' is undefined" here, not a TypeError inside the filter
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
                raise _TemplateLimitError("a filter argument is too large")
        if len(args) > offset:
            if name == "join":
                args = _checked_join_args(args, offset, kwargs, budget)
            else:
                budget.weigh(args[offset])
        return func(*args, **kwargs)

    for attribute in ("jinja_pass_arg",):
        if hasattr(func, attribute):
            setattr(guarded, attribute, getattr(func, attribute))
    return guarded


def _checked_join_args(args: tuple[Any, ...], offset: int, kwargs: Mapping[str, Any],
                       budget: _Budget) -> tuple[Any, ...]:
    items = list(_counted(args[offset], budget))
    separator = args[offset + 1] if len(args) > offset + 1 else kwargs.get("d", "")
    separators = _weight(separator, MAX_OUTPUT_CHARS + 1) * max(len(items) - 1, 0)
    budget.take_work(min(separators, MAX_OUTPUT_CHARS + 1))
    budget.weigh(items)
    return (*args[:offset], items, *args[offset + 1:])


def _check_binop(operator: str, left: Any, right: Any, budget: _Budget) -> None:
    """Refuse (before Python allocates it) a result too large; charge what is built."""
    if operator == "*":
        if _plain_int(left) and _plain_int(right):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _TemplateLimitError("a number would be too large")
            return
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sized, (str, list, tuple)) and isinstance(count, int):
            if len(sized) * max(count, 0) > MAX_OUTPUT_CHARS:
                raise _TemplateLimitError("a repetition would exceed the output limit")
            budget.take_work(len(sized) * max(count, 0))
    elif operator == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            budget.take_work(len(left) + len(right))
    elif operator == "**":
        if _huge_power(left, right):
            raise _TemplateLimitError("an exponent is too large")
    elif operator == "%" and isinstance(left, str):
        budget.take_work(_percent_size(left, right, budget))


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _huge_power(base: Any, exponent: Any) -> bool:
    numbers = isinstance(base, (int, float)) and isinstance(exponent, (int, float))
    if not numbers:
        return False
    if abs(exponent) > 64 and abs(base) > 1:
        return True
    return _plain_int(base) and _plain_int(exponent) and base.bit_length() * abs(exponent) > MAX_INT_BITS


def _percent_size(template: str, arguments: Any, budget: _Budget) -> int:
    """An upper bound on the size of `template % arguments`: `'%*s' % (10**9, 'x')` pads to any width."""
    size = len(template) + budget.weigh(arguments)
    for match in _PERCENT_SPEC.finditer(template):
        width, precision = match.group(1), match.group(2)
        if "*" in (width, precision):
            raise _TemplateLimitError("`*` widths in %-formatting are not allowed")
        size += int(width or 0) + int(precision or 0)
        if size > MAX_OUTPUT_CHARS:
            raise _TemplateLimitError("a %-formatted string would exceed the output limit")
    return size


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
