"""Jinja2 manifest templates in the bounded sandbox (reliability.md §5.8, S12).

Each hostile template must end in a `ManifestError` within 100 ms; memory is checked in a
subprocess for the ones that used to allocate hundreds of MB (the sandbox alone bounds neither
CPU nor memory). The VESSL templates in the corpus must still render with their variables.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from runner.manifest import ManifestRequest, load_manifest
from runner.manifest.problems import ManifestError
from runner.manifest.template import (
    MAX_ITERATIONS,
    MAX_OUTPUT_CHARS,
    is_template,
    parse_variables,
    render_manifest_template,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "vessl" / "templates"
SRC = "t.yaml"
LIMIT_S = 0.1


def render(text: str, variables: dict[str, Any] | None = None) -> str:
    return render_manifest_template(text, variables or {}, SRC)


def refused(text: str, variables: dict[str, Any] | None = None) -> str:
    """The single rendered problem line; asserts it took under LIMIT_S."""
    render("{{ 1 }}")  # warm jinja2 up so its import is not timed
    started = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        render(text, variables)
    elapsed = time.perf_counter() - started
    assert elapsed < LIMIT_S, f"took {elapsed * 1000:.0f} ms"
    assert len(info.value.problems) == 1
    return info.value.report_lines()[0]


HOSTILE = {
    # attribute walks to Python internals
    "dunder-class": ("{{ ''.__class__.__mro__[1].__subclasses__() }}",
                     "t.yaml:1:1: (root): template refused by the sandbox: access to attribute '__class__' of 'str' "
                     "object is unsafe."),
    "dunder-globals": ("{{ self.__init__.__globals__ }}", "access to attribute '__init__'"),
    "dunder-var": ("{{ x.__class__.__bases__ }}", "access to attribute '__class__' of 'int'"),
    # the routes CVE-2025-27516 / CVE-2024-56326 used
    "attr-filter": ("{{ ''|attr('__class__') }}", "template syntax error: No filter named 'attr'."),
    "attr-format": ("{{ ('{0.__class__}'|attr('format'))(1) }}", "No filter named 'attr'."),
    "format-method": ("{{ '{0.__class__}'.format(1) }}", "str.format() is not allowed in manifest templates"),
    "format-padding": ("{{ '{:>100000000}'.format(1) }}", "str.format() is not allowed"),
    "format-map": ("{{ '{a}'.format_map({'a': 1}) }}", "str.format_map() is not allowed"),
    "format-filter": ("{{ '%s'|format(1) }}", "No filter named 'format'."),
    # globals jinja2 ships by default are not there
    "cycler": ("{{ cycler('a', 'b').next() }}", "template variable cycler is not defined"),
    "cycler-walk": ("{{ cycler.__init__.__globals__ }}", "access to attribute '__init__'"),
    "joiner": ("{{ joiner(',')() }}", "template variable joiner is not defined"),
    "namespace": ("{% set ns = namespace(a=1) %}{{ ns.a }}", "template variable namespace is not defined"),
    "lipsum": ("{{ lipsum(100000) }}", "template variable lipsum is not defined"),
    "dict-method": ("{{ {}.update({'a': 1}) }}", "access to attribute 'update' of 'dict' object is unsafe."),
    # CPU
    "huge-range": ("{% for i in range(10**9) %}{% endfor %}", f"template refused: loops exceed {MAX_ITERATIONS} "
                                                               "iterations"),
    "range-list": ("{{ range(100000)|list|length }}", "loops exceed"),
    "nested-loops": ("{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}",
                     "loops exceed"),
    "nested-loops-over-a-list": ("{% set l = range(3000)|list %}{% for a in l %}{% for b in l %}{% endfor %}"
                                 "{% endfor %}", "loops and calls exceed"),
    "macro-fan-out": ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
                      "loops and calls exceed"),
    "recursive-loop": ("{% for x in [[1]] recursive %}{{ loop(x) }}{% endfor %}",
                       "template syntax error: recursive loops are not allowed in manifest templates"),
    "macro-recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "template refused"),
    "power-tower": ("{{ 2**64**64**64**64 }}", "an exponent is too large"),
    "big-exponent": ("{{ 10**100000 }}", "an exponent is too large"),
    "int-squaring": ("{% set a = 2**60 %}{% set b = a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a %}{% set c = b*b %}"
                     "{% set d = c*c %}{% set e = d*d %}{% set f = e*e %}{{ f }}", "a number would be too large"),
    # memory
    "string-repetition": ("{{ 'x' * 10**8 }}", "a repetition would exceed the output limit"),
    "string-repetition-reversed": ("{{ 10**8 * 'x' }}", "a repetition would exceed the output limit"),
    "list-repetition": ("{{ ['x'] * 10**8 }}", "a repetition would exceed the output limit"),
    "repetition-via-vars": ("{{ s * n }}", "a repetition would exceed the output limit"),
    "ljust": ("{{ 'x'.ljust(10**9) }}", "str.ljust() is not allowed in manifest templates"),
    "center": ("{{ 'x'.center(10**9) }}", "str.center() is not allowed"),
    "replace": ("{{ ('x'*1000).replace('x', 'x'*1000) }}", "str.replace() is not allowed"),
    "percent-star-width": ("{{ '%*s' % (10**9, 'x') }}", "`*` widths in %-formatting are not allowed"),
    "percent-width": ("{{ '%0100000000d' % 1 }}", "a %-formatted string would exceed the output limit"),
    "percent-precision": ("{{ '%.100000000f' % 1.0 }}", "a %-formatted string would exceed the output limit"),
    "percent-keyed": ("{{ '%(a)100000000s' % {'a': 1} }}", "a %-formatted string would exceed the output limit"),
    "concat-doubling": ("{% set a = 'x'*200000 %}{% set b = a~a %}{% set c = b~b %}{% set d = c~c %}{{ d|length }}",
                        "a value would exceed the output limit"),
    "plus-doubling": ("{% set a = 'x'*200000 %}{% set b = a+a %}{% set c = b+b %}{{ c|length }}",
                      "a value would exceed the output limit"),
    "list-plus-doubling": ("{% set a = range(10000)|list %}{% set b = a+a %}{% set c = b+b %}{% set d = c+c %}"
                           "{% set e = d+d %}{% set f = e+e %}{% set g = f+f %}{{ g|length }}", "exceed"),
    "join-separator": ("{{ range(10000)|join('x'*200000) }}", "a value would exceed the output limit"),
    "nested-literal-lists": ("{% set a = [1,1,1,1,1,1,1,1] %}{% set b = [a,a,a,a,a,a,a,a] %}"
                             "{% set c = [b,b,b,b,b,b,b,b] %}{% set d = [c,c,c,c,c,c,c,c] %}"
                             "{% set e = [d,d,d,d,d,d,d,d] %}{% set f = [e,e,e,e,e,e,e,e] %}"
                             "{% set g = [f,f,f,f,f,f,f,f] %}{{ g }}", "a value would exceed the output limit"),
    "sum-of-lists": ("{{ ([[1]*200000]*200000)|sum(start=[])|length }}", "exceed"),
    "tojson-of-shared-list": ("{% set a = 'x'*1000 %}{{ ([a]*100000)|tojson }}", "exceed"),
    "captured-block": ("{% set a %}{% for i in range(5000) %}{{ 'x'*200000 }}{% endfor %}{% endset %}"
                       "{{ a|length }}", "the template builds more than"),
    "filter-block": ("{% filter upper %}{% for i in range(9000) %}" + "y" * 1000 + "{% endfor %}{% endfilter %}",
                     "a value would exceed the output limit"),
    "truncate-argument": ("{{ 'x'|truncate(10**9) }}", "a filter argument is too large"),
    "removed-filters": ("{{ 'x'|indent(10**9) }}", "No filter named 'indent'."),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_templates_are_refused_quickly(case: str) -> None:
    text, expected = HOSTILE[case]
    line = refused(text, {"x": 1, "s": "x", "n": 10**8})
    assert line.startswith("t.yaml:"), line
    assert expected in line


_MEMORY_PROBE = textwrap.dedent("""\
    import json, resource, sys
    from runner.manifest.template import render_manifest_template
    from runner.manifest.problems import ManifestError
    render_manifest_template("{{ 1 }}", {}, "warm")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {}
    for name, text in json.load(sys.stdin).items():
        try:
            render_manifest_template(text, {}, "t.yaml")
            results[name] = "rendered"
        except ManifestError:
            results[name] = "refused"
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"results": results, "grew_kib": grew}))
""")

MEMORY_HUNGRY = [
    "join-separator", "percent-star-width", "percent-width", "concat-doubling", "plus-doubling",
    "list-plus-doubling", "captured-block", "nested-literal-lists", "string-repetition", "format-padding",
    "sum-of-lists", "tojson-of-shared-list", "filter-block",
]


def test_hostile_templates_stay_under_20_mb_of_extra_memory() -> None:
    cases = {name: HOSTILE[name][0] for name in MEMORY_HUNGRY}
    result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE], input=json.dumps(cases), capture_output=True,
                            text=True, timeout=120, check=True)
    report = json.loads(result.stdout)
    assert report["results"] == dict.fromkeys(cases, "refused")
    assert report["grew_kib"] < 20 * 1024, f"peak RSS grew {report['grew_kib']} KiB"


# -- the output cap -------------------------------------------------------------------------------
def test_output_larger_than_the_cap_is_refused_while_streaming() -> None:
    line = refused("{% for i in range(1000) %}" + "x" * 300 + "{% endfor %}")
    assert line == f"t.yaml: (root): template refused: output exceeds {MAX_OUTPUT_CHARS} characters"


def test_output_at_the_cap_renders() -> None:
    assert len(render("{{ 'x' * n }}", {"n": MAX_OUTPUT_CHARS})) == MAX_OUTPUT_CHARS


def test_output_cap_is_at_most_a_quarter_of_the_manifest_cap() -> None:
    from runner.manifest.load import MAX_MANIFEST_BYTES

    assert 64 * 1024 <= MAX_OUTPUT_CHARS <= MAX_MANIFEST_BYTES // 4


# -- errors point at the template's line ----------------------------------------------------------
def test_undefined_variable_names_it_and_suggests_var() -> None:
    with pytest.raises(ManifestError) as info:
        render("name: x\nresources: {}\nimage: python:{{ py_version }}\n")
    assert info.value.report_lines() == [
        "t.yaml:3:1: (root): template variable py_version is not defined\n"
        "    hint: pass it on the command line: --var py_version=VALUE"
    ]


def test_undefined_attribute_is_located() -> None:
    with pytest.raises(ManifestError) as info:
        render("a: 1\nb: 2\nc: {{ x.y }}\n", {"x": 1})
    assert info.value.report_lines() == ["t.yaml:3:1: (root): template error: 'int object' has no attribute 'y'"]


def test_syntax_error_points_at_its_line() -> None:
    with pytest.raises(ManifestError) as info:
        render("a: 1\nb: 2\nc: {% for %}\n")
    assert info.value.report_lines() == [
        "t.yaml:3:1: (root): template syntax error: Expected an expression, got 'end of statement block'"
    ]


def test_unclosed_block_points_at_the_line_jinja_reports() -> None:
    with pytest.raises(ManifestError, match=r"t\.yaml:2:1: \(root\): template syntax error: Unexpected end"):
        render("a: 1\n{% if x %}\nb: 2\n")


# -- what still works -------------------------------------------------------------------------------
def test_ordinary_template_features_render_the_same_as_jinja() -> None:
    text = ("{% for i in range(3) %}{{ i ~ '-' ~ loop.index }} {% endfor %}| {{ [1, 2]|join(',') }} | "
            "{{ '%05.1f' % 3.14159 }} | {{ 'abc'.upper() }} | {{ 'a' + 'b' }} | {{ 2**10 }} | "
            "{% set s %}x{{ 1 }}{% endset %}{{ s }} | {% macro m(a) %}<{{ a }}>{% endmacro %}{{ m(1) }}{{ m(2) }} | "
            "{% filter upper %}low{% endfilter %} | {{ missing|default('d') }} | {{ 0.00316|round(4) }} | "
            "{{ name|lower|replace_me if false else name|title }}")
    assert render(text, {"name": "qwen small"}) == (
        "0-1 1-2 2-3 | 1,2 | 003.1 | ABC | ab | 1024 | x1 | <1><2> | LOW | d | 0.0032 | Qwen Small"
    )


def test_vessl_hpt_template_renders_with_var_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "hpt.yaml"
    path.write_text((TEMPLATES / "hpt-mnist.yaml").read_text())
    loaded = load_manifest(ManifestRequest(str(path), process_env={},
                                           template_vars=parse_variables(["lr=0.0031622776", "batch_size=64",
                                                                          "epochs=5"])))
    assert loaded.manifest.name == "hpt-mnist-lr-0.0032-bs-64"
    (step,) = loaded.manifest.steps
    assert "--learning_rate=0.0031622776 --batch_size=64 --epochs=5" in step.command  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["hpt-mnist", "lora-sweep"])
def test_corpus_templates_render_in_under_100_ms(name: str) -> None:
    text = (TEMPLATES / f"{name}.yaml").read_text()
    variables = json.loads((TEMPLATES / f"{name}.vars.json").read_text())
    render("{{ 1 }}")
    started = time.perf_counter()
    out = render(text, variables)
    assert time.perf_counter() - started < LIMIT_S
    assert not is_template(out)


def test_hpt_template_without_vars_names_the_first_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "hpt.yaml"
    path.write_text((TEMPLATES / "hpt-mnist.yaml").read_text())
    with pytest.raises(ManifestError) as info:
        load_manifest(ManifestRequest(str(path), process_env={}))
    assert info.value.report_lines() == [
        f"{path}:1:1: (root): template variable lr is not defined\n"
        "    hint: pass it on the command line: --var lr=VALUE"
    ]


def test_templates_see_vars_only_never_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: '{{ HOME }}'\nresources: {}\nimage: x\n")
    with pytest.raises(ManifestError, match="template variable HOME is not defined"):
        load_manifest(ManifestRequest(str(path), process_env={"HOME": "/root"}, env_overrides={"HOME": "/x"}))


@pytest.mark.parametrize(("text", "expected"), [("{{ x }}", True), ("{% if %}", True), ("env: {A: {B}}", False),
                                                ("${X}", False), ("run: echo ${#VAR}", False)])
def test_is_template(text: str, expected: bool) -> None:
    assert is_template(text) is expected


def test_parse_variables_types_values() -> None:
    assert parse_variables(["lr=0.01", "n=5", "flag=True", "off=false", "name=a=b", "empty="]) == {
        "lr": 0.01, "n": 5, "flag": True, "off": False, "name": "a=b", "empty": "",
    }


@pytest.mark.parametrize("item", ["novalue", "1x=2", "a-b=1", "=3"])
def test_parse_variables_refuses_bad_names(item: str) -> None:
    with pytest.raises(ManifestError, match="expected NAME=VALUE"):
        parse_variables([item])
