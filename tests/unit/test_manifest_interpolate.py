"""The compose `${VAR}` grammar (`runner.manifest.interpolate`), one string value at a time.

The table follows docker compose's interpolation rules; where runner is stricter (an unset
variable without a default is reported instead of silently becoming ""), the test says so.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.manifest.interpolate import InterpolationSyntaxError, Unresolved, interpolate

ENV = {"SET": "val", "EMPTY": "", "OTHER": "o"}


def run(text: str) -> tuple[str, list[Unresolved]]:
    return interpolate(text, ENV.get)


GRAMMAR = [
    # text, result, unresolved names
    ("plain text", "plain text", []),
    ("$$", "$", []),
    ("$$SET", "$SET", []),
    ("$${SET}", "${SET}", []),
    ("$$$$", "$$", []),
    ("$SET", "val", []),
    ("${SET}", "val", []),
    ("pre${SET}post$SET.x", "prevalpostval.x", []),
    ("${EMPTY}", "", []),
    # unset without a default: kept verbatim and reported (compose would substitute "")
    ("${UNSET}", "${UNSET}", ["UNSET"]),
    ("$UNSET", "$UNSET", ["UNSET"]),
    # :- unset or empty → default; - unset only → default
    ("${UNSET:-d}", "d", []),
    ("${EMPTY:-d}", "d", []),
    ("${SET:-d}", "val", []),
    ("${UNSET-d}", "d", []),
    ("${EMPTY-d}", "", []),
    ("${UNSET:-}", "", []),
    ("${UNSET:-a b:c/d}", "a b:c/d", []),
    # :+ / +: the alternative when set
    ("${SET:+alt}", "alt", []),
    ("${EMPTY:+alt}", "", []),
    ("${EMPTY+alt}", "alt", []),
    ("${UNSET+alt}", "", []),
    # nested defaults, evaluated only when needed
    ("${UNSET:-${SET}}", "val", []),
    ("${UNSET:-${ALSO_UNSET}}", "${ALSO_UNSET}", ["ALSO_UNSET"]),
    ("${SET:-${ALSO_UNSET}}", "val", []),
    ("${UNSET:-x${OTHER}y}", "xoy", []),
    # a `$` that starts nothing is literal
    ("a$", "a$", []),
    ("$ 1", "$ 1", []),
    ("$1", "$1", []),
    ("100$", "100$", []),
    ("${UNSET:-}}", "}", []),
]


@pytest.mark.parametrize(("text", "result", "missing"), GRAMMAR)
def test_grammar(text: str, result: str, missing: list[str]) -> None:
    value, unresolved = run(text)
    assert value == result
    assert [u.name for u in unresolved] == missing


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("${UNSET:?need it}", "UNSET", "need it"),
        ("${EMPTY:?must not be empty}", "EMPTY", "must not be empty"),
        ("${UNSET?m}", "UNSET", "m"),
    ],
)
def test_required_variables_carry_their_message(text: str, name: str, message: str) -> None:
    value, unresolved = run(text)
    assert value == text
    assert unresolved == [Unresolved(name, message)]


@pytest.mark.parametrize(("text", "result"), [("${SET:?m}", "val"), ("${EMPTY?m}", "")])
def test_required_variables_that_are_present(text: str, result: str) -> None:
    assert run(text) == (result, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${", "invalid variable name after `${` at offset 0"),
        ("${}", "invalid variable name after `${` at offset 0"),
        ("x ${1A}", "invalid variable name after `${` at offset 2"),
        ("${SET", "invalid `${SET…` expression (expected `}`)"),
        ("${SET!}", "invalid `${SET…` expression (expected `}`)"),
        ("${SET:-x", "unterminated `${` (missing `}`)"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationSyntaxError) as info:
        run(text)
    assert str(info.value) == message


def test_lookup_is_called_only_for_names_the_text_uses() -> None:
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return "v"

    assert interpolate("no dollars here", lookup) == ("no dollars here", [])
    assert interpolate("$A and ${B:-x} and $$C", lookup) == ("v and v and $C", [])
    assert asked == ["A", "B"]


def test_several_unresolved_names_are_all_listed_in_order() -> None:
    _, unresolved = run("${A}/${B:?b needed}/$C")
    assert unresolved == [Unresolved("A"), Unresolved("B", "b needed"), Unresolved("C")]


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_dollar_is_returned_unchanged(text: str) -> None:
    assert run(text) == (text, [])


@given(st.text(alphabet="${}:-?+AB_ x"))
def test_never_raises_anything_but_a_syntax_error(text: str) -> None:
    try:
        value, unresolved = run(text)
    except InterpolationSyntaxError:
        return
    assert isinstance(value, str)
    assert all(u.name.isidentifier() for u in unresolved)
