"""`runner.manifest.load`: bounded safe YAML with positions (reliability.md §5.1, S1, S2).

Every bound is tried with the smallest input that crosses it, and every refusal is checked for
its exact message and `line:col`. Positions are 1-based columns in the *original* text, so a
tab (which the loader expands to two spaces, as VESSL's CLI does) counts as one column.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runner.manifest.load import (
    MAX_DEPTH,
    MAX_EVENTS,
    MAX_MANIFEST_BYTES,
    decode_manifest,
    load_manifest_text,
    read_manifest_bytes,
)
from runner.manifest.problems import ManifestError, Position

SRC = "m.yaml"

# Nine levels, nine-fold each: 9**9 ≈ 387 M leaves if anything ever expanded it.
BILLION_LAUGHS = "".join(
    [
        'a: &a ["x","x","x","x","x","x","x","x","x"]\n',
        *(
            f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]\n"
            for a, b in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def refusal(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifest_text(text, SRC)
    return info.value


def only_line(error: ManifestError) -> str:
    """The single rendered problem line (hint lines dropped)."""
    assert len(error.problems) == 1, error.report_lines()
    return error.report_lines()[0].split("\n")[0]


# -- positions ------------------------------------------------------------------------------------
def test_positions_of_values_and_keys() -> None:
    doc = load_manifest_text(
        textwrap.dedent("""\
            name: demo
            resources:
              preset: cpu-small
            ports:
              - 8000
              - {name: web, port: 8080}
            """),
        SRC,
    )
    assert doc.value_positions[("name",)] == Position(1, 7)
    assert doc.key_positions[("name",)] == Position(1, 1)
    assert doc.key_positions[("resources", "preset")] == Position(3, 3)
    assert doc.value_positions[("resources", "preset")] == Position(3, 11)
    assert doc.value_positions[("ports", 0)] == Position(5, 5)
    assert doc.value_positions[("ports", 1)] == Position(6, 5)
    assert doc.key_positions[("ports", 1, "port")] == Position(6, 17)
    assert doc.value_positions[("ports", 1, "port")] == Position(6, 23)


def test_positions_count_a_tab_as_one_column() -> None:
    doc = load_manifest_text("a:\n\tb: 1\n\tc:\tx\nd:\n\t\te: y\n", SRC)
    assert doc.data == {"a": {"b": 1, "c": "x"}, "d": {"e": "y"}}
    assert doc.key_positions[("a", "b")] == Position(2, 2)
    assert doc.value_positions[("a", "b")] == Position(2, 5)
    assert doc.value_positions[("a", "c")] == Position(3, 5)  # `\tc:\tx`: x is the 5th character
    assert doc.key_positions[("d", "e")] == Position(5, 3)
    assert doc.value_positions[("d", "e")] == Position(5, 6)


def test_error_after_a_tab_points_at_the_original_column() -> None:
    error = refusal("a:\n\tb: &x 1\n")
    assert only_line(error) == "m.yaml:2:5: a.b: YAML anchors (&x) are not allowed in a manifest"


def test_position_of_falls_back_to_the_nearest_located_ancestor() -> None:
    doc = load_manifest_text("env:\n  A: 1\n", SRC)
    assert doc.position_of(("env", "A", "value")) == Position(2, 6)
    assert doc.position_of(("env", "A"), key=True) == Position(2, 3)
    assert doc.position_of(("nope",)) == Position(1, 1)  # the document root


def test_crlf_line_endings_keep_line_numbers() -> None:
    doc = load_manifest_text("a: 1\r\nb:\r\n  c: 2\r\n", SRC)
    assert doc.value_positions[("b", "c")] == Position(3, 6)


# -- YAML 1.1 coercion side table ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value", "raw"),
    [
        ("ref: 1.10", 1.1, "1.10"),
        ("mode: 0777", 511, "0777"),
        ("flag: NO", False, "NO"),
        ("flag: on", True, "on"),
        ("time: 12:30", 750, "12:30"),
        ("big: 1e400", "1e400", None),  # YAML 1.1 floats need a dot: stays a string
        ("hex: 0x1F", 31, "0x1F"),
        ("n: ~", None, "~"),
    ],
)
def test_scalars_yaml_coerces_keep_their_source_text(text: str, value: object, raw: str | None) -> None:
    doc = load_manifest_text(text + "\n", SRC)
    (key,) = doc.data
    assert doc.data[key] == value
    assert doc.scalar_text.get((key,)) == raw


def test_quoted_scalars_are_strings_and_not_in_the_side_table() -> None:
    doc = load_manifest_text('ref: "1.10"\nflag: "no"\n', SRC)
    assert doc.data == {"ref": "1.10", "flag": "no"}
    assert dict(doc.scalar_text) == {}


def test_implicit_timestamps_stay_text() -> None:
    assert load_manifest_text("day: 2001-12-14\n", SRC).data == {"day": "2001-12-14"}


# -- anchors, aliases, the billion laughs ---------------------------------------------------------
def test_anchor_is_refused_where_it_appears() -> None:
    assert only_line(refusal("a: 1\nb: &x 2\n")) == "m.yaml:2:4: b: YAML anchors (&x) are not allowed in a manifest"


def test_alias_is_refused_even_without_an_anchor() -> None:
    assert only_line(refusal("a: 1\nb: *x\n")) == "m.yaml:2:4: b: YAML aliases (*name) are not allowed in a manifest"


def test_anchor_on_a_key_is_refused() -> None:
    assert only_line(refusal("&k a: 1\n")) == "m.yaml:1:1: (root): YAML anchors (&k) are not allowed in a manifest"


def test_billion_laughs_is_about_300_bytes() -> None:
    assert 250 <= len(BILLION_LAUGHS) <= 400


def test_billion_laughs_is_refused_at_the_first_anchor_in_under_100_ms() -> None:
    load_manifest_text("warm: up\n", SRC)
    started = time.perf_counter()
    error = refusal(BILLION_LAUGHS)
    elapsed = time.perf_counter() - started
    assert only_line(error) == "m.yaml:1:4: a: YAML anchors (&a) are not allowed in a manifest"
    assert elapsed < 0.1, f"{elapsed * 1000:.1f} ms"


_RSS_PROBE = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from runner.manifest.load import load_manifest_text
    from runner.manifest.problems import ManifestError

    def kib(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise SystemExit(f"no {field}")

    load_manifest_text("warm: up\\n", "warm")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    except OSError:
        pass
    before = max(kib("VmHWM"), kib("VmRSS"))
    try:
        load_manifest_text(sys.stdin.read(), "m.yaml")
        print("LOADED")
    except ManifestError:
        pass
    print(kib("VmHWM") - before)
""")


def test_billion_laughs_peak_rss_growth_is_under_20_mb() -> None:
    result = subprocess.run([sys.executable, "-c", _RSS_PROBE], input=BILLION_LAUGHS, capture_output=True,
                            text=True, timeout=60, check=True)
    growth_kib = int(result.stdout.strip().splitlines()[-1])
    assert "LOADED" not in result.stdout
    assert growth_kib < 20 * 1024, f"peak RSS grew {growth_kib} KiB"


# -- tags -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("a: !!python/object:os.system x\n", "tag:yaml.org,2002:python/object:os.system"),
        ("a: !!python/object/apply:os.system [id]\n", "tag:yaml.org,2002:python/object/apply:os.system"),
        ("a: !!python/name:os.system ''\n", "tag:yaml.org,2002:python/name:os.system"),
        ("a: !foo x\n", "!foo"),
        ("a: !!binary aGVsbG8=\n", "tag:yaml.org,2002:binary"),
        ("a: !!set {x, y}\n", "tag:yaml.org,2002:set"),
        ("a: !!omap [b: 1]\n", "tag:yaml.org,2002:omap"),
        ("a: !!timestamp 2001-01-01\n", "tag:yaml.org,2002:timestamp"),
    ],
)
def test_custom_and_unsafe_tags_are_refused(text: str, tag: str) -> None:
    assert only_line(refusal(text)) == f"m.yaml:1:4: a: YAML tag {tag!r} is not allowed in a manifest"


def test_standard_scalar_tags_are_allowed() -> None:
    doc = load_manifest_text("a: !!str 12\nb: !!int '3'\nc: ! 12\n", SRC)
    assert doc.data == {"a": "12", "b": 3, "c": 12}


# -- duplicate keys, documents, keys ----------------------------------------------------------------
def test_duplicate_top_level_key() -> None:
    error = refusal("a: 1\nb: 2\na: 3\n")
    assert only_line(error) == "m.yaml:3:1: a: duplicate key 'a' (first defined at line 1)"
    assert "silently keep only the last" in str(error)


def test_duplicate_nested_key() -> None:
    error = refusal("env:\n  X: 1\n  Y: 2\n  X: 3\n")
    assert only_line(error) == "m.yaml:4:3: env.X: duplicate key 'X' (first defined at line 2)"


def test_duplicate_key_in_a_flow_mapping() -> None:
    assert only_line(refusal("{a: 1, a: 2}\n")) == "m.yaml:1:8: a: duplicate key 'a' (first defined at line 1)"


def test_same_key_in_different_mappings_is_fine() -> None:
    assert load_manifest_text("a: {x: 1}\nb: {x: 2}\n", SRC).data == {"a": {"x": 1}, "b": {"x": 2}}


@pytest.mark.parametrize("text", ["a: 1\n---\nb: 2\n", "a: 1\n---\n", "---\na: 1\n---\nb: 2\n"])
def test_a_second_document_is_refused(text: str) -> None:
    error = refusal(text)
    assert only_line(error).endswith("(root): expected a single YAML document, found another one")
    assert "remove the `---` separator" in str(error)


def test_one_explicit_document_is_fine() -> None:
    assert load_manifest_text("---\na: 1\n...\n", SRC).data == {"a": 1}


@pytest.mark.parametrize("text", ["? [a]\n: 1\n", "{a: 1}: 2\n"])
def test_non_scalar_keys_are_refused(text: str) -> None:
    assert only_line(refusal(text)).endswith("(root): mapping keys must be plain text, not lists or mappings")


# -- size and depth ---------------------------------------------------------------------------------
def test_twenty_thousand_brackets_give_a_depth_error_not_a_recursion_error() -> None:
    started = time.perf_counter()
    error = refusal("[" * 20_000)
    assert time.perf_counter() - started < 1
    assert only_line(error) == f"m.yaml:1:{MAX_DEPTH + 1}: (root): manifest nests deeper than {MAX_DEPTH} levels"


@pytest.mark.parametrize("opener", ["{a: " * 100, "- " * 100, "a: [" * 100])
def test_other_deep_nesting_is_refused(opener: str) -> None:
    assert f"nests deeper than {MAX_DEPTH} levels" in str(refusal(opener + "x"))


def test_nesting_at_the_limit_loads() -> None:
    text = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert load_manifest_text("a: " + text, SRC).data["a"] is not None


def test_node_count_is_capped() -> None:
    error = refusal("[" + "1," * MAX_EVENTS + "]")
    assert f"manifest has more than {MAX_EVENTS} YAML nodes" in only_line(error)


def test_two_mib_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * (2 << 20))
    started = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        read_manifest_bytes(str(path))
    assert time.perf_counter() - started < 1
    assert only_line(info.value) == f"{path}: (root): manifest is {(2 << 20) + 3} bytes; the limit is 1048576 bytes"


def test_ten_mib_scalar_text_is_refused_quickly() -> None:
    started = time.perf_counter()
    error = refusal("a: " + "x" * (10 << 20))
    assert time.perf_counter() - started < 1
    assert "the limit is 1048576 bytes" in only_line(error)


def test_oversized_stdin_is_refused_after_reading_one_byte_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.BytesIO(b"a: " + b"x" * (3 << 20))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
    with pytest.raises(ManifestError, match="the limit is 1048576 bytes"):
        read_manifest_bytes("-")
    assert stream.tell() <= MAX_MANIFEST_BYTES + 1 + io.DEFAULT_BUFFER_SIZE


def test_file_at_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_bytes(b"a: " + b"x" * (MAX_MANIFEST_BYTES - 3))
    assert len(read_manifest_bytes(str(path))) == MAX_MANIFEST_BYTES


@pytest.mark.parametrize(("name", "message"), [("missing.yaml", "file not found"), (".", "is a directory")])
def test_unreadable_paths(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        read_manifest_bytes(str(tmp_path / name))


# -- encodings and characters -----------------------------------------------------------------------
def test_nul_is_refused_with_its_position() -> None:
    assert only_line(refusal("a: 1\nb: x\x00y\n")) == "m.yaml:2:5: (root): NUL is not allowed in a manifest"


@pytest.mark.parametrize("char", ["\x01", "\x07", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f", "\x7f"])
def test_control_characters_are_refused_with_their_position(char: str) -> None:
    line = only_line(refusal(f"name: ok\n# c\ndescription: ab{char}\n"))
    assert line == f"m.yaml:3:16: (root): control character U+{ord(char):04X} is not allowed in a manifest"


def test_tab_cr_and_lf_are_allowed() -> None:
    assert load_manifest_text("a:\r\n\tb: 'x\ty'\r\n", SRC).data == {"a": {"b": "x  y"}}  # tabs → 2 spaces


def test_lone_surrogate_in_text_is_a_manifest_error() -> None:
    line = only_line(refusal("a: \ud800\n"))
    assert line == "m.yaml:1:4: (root): a lone surrogate U+D800 is not allowed in a manifest"


def test_character_yaml_refuses_is_located() -> None:
    line = only_line(refusal("a: 1\nb: \ufffe\n"))
    assert line == "m.yaml:2:4: (root): invalid YAML: character U+FFFE is not allowed"


def test_invalid_utf8_names_line_and_column() -> None:
    with pytest.raises(ManifestError) as info:
        decode_manifest(b"name: ok\nimage: py\xfft\n", SRC)
    assert only_line(info.value) == "m.yaml:2:10: (root): invalid UTF-8 byte"


def test_invalid_utf8_column_counts_characters_not_bytes() -> None:
    with pytest.raises(ManifestError) as info:
        decode_manifest("name: é€".encode() + b"\xff\n", SRC)
    assert only_line(info.value) == "m.yaml:1:9: (root): invalid UTF-8 byte"


def test_utf8_bom_is_accepted_and_does_not_shift_columns() -> None:
    text = decode_manifest(b"\xef\xbb\xbfname: demo\n", SRC)
    doc = load_manifest_text(text, SRC)
    assert doc.data == {"name": "demo"}
    assert doc.key_positions[("name",)] == Position(1, 1)


# -- document shape and syntax errors ---------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "~\n", "---\n"])
def test_empty_documents(text: str) -> None:
    error = refusal(text)
    assert only_line(error) == "m.yaml: (root): the manifest is empty"
    assert "at least `image` and `resources`" in str(error)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("hello\n", "a single value"),
                                            ("42\n", "a single value")])
def test_non_mapping_roots(text: str, kind: str) -> None:
    line = only_line(refusal(text))
    assert line == f"m.yaml:1:1: (root): the manifest must be a mapping of keys (name, image, resources, …), not {kind}"


def test_unquoted_colon_in_a_value_gets_a_quoting_hint() -> None:
    error = refusal("name: x\ncommand: echo a: b\n")
    assert only_line(error) == "m.yaml:2:16: (root): invalid YAML: mapping values are not allowed in this context"
    assert 'hint: a value containing \': \' must be quoted, e.g. command: "echo a: b"' in str(error)


@pytest.mark.parametrize("char", ["@", "`"])
def test_reserved_first_characters_get_a_quoting_hint(char: str) -> None:
    error = refusal(f"a: {char}x\n")
    assert only_line(error) == "m.yaml:1:4: (root): invalid YAML: found character that cannot start any token"
    assert "quote the value" in str(error)


def test_unclosed_flow_sequence_is_located() -> None:
    assert only_line(refusal("a: [1, 2\n")) == "m.yaml:2:1: (root): invalid YAML: did not find expected ',' or ']'"
