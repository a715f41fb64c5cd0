"""Artifact names and manifest URIs: what maps to which (kind, name, version), and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.artifacts import ArtifactNameError, ArtifactRef, parse_store_name, ref_from_uri
from runner.artifacts.layout import ArtifactLayout
from runner.errors import UsageError


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("vessl-artifact://acme/proj/hf-cache", ArtifactRef("artifact", "acme/proj/hf-cache")),
        ("artifact://hf-cache", ArtifactRef("artifact", "hf-cache")),
        ("artifact://team/hf-cache:7", ArtifactRef("artifact", "team/hf-cache", 7)),
        ("vessl-model://acme/llama/3", ArtifactRef("model", "acme/llama", 3)),
        ("vessl-model://acme/llama", ArtifactRef("model", "acme/llama")),
        ("vessl-dataset://acme/squad_v2.1", ArtifactRef("dataset", "acme/squad_v2.1")),
    ],
)
def test_uris_map_onto_refs(uri: str, expected: ArtifactRef) -> None:
    assert ref_from_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("vessl-artifact://acme/proj", "vessl-artifact://ORG/PROJECT/NAME"),
        ("vessl-artifact://acme/proj/a/b", "vessl-artifact://ORG/PROJECT/NAME"),
        ("vessl-model://acme/llama/latest", "version 'latest' is not a positive integer"),
        ("vessl-model://acme/llama/0", "version '0' is not a positive integer"),
        ("vessl-dataset://acme", "vessl-dataset://ORG/NAME"),
        ("artifact://../etc", "invalid component '..'"),
        ("artifact://a/./b", "invalid component '.'"),
        ("artifact:///abs", "invalid component ''"),
        ("artifact://a//b", "invalid component ''"),
        ("artifact://a/b/c/d/e", "5 components"),
        ("artifact://a:x", "version 'x' is not a positive integer"),
        ("artifact://.hidden", "invalid component '.hidden'"),
        ("artifact://org/versions", "reserved"),
        ("artifact://org/LATEST", "reserved"),
        ("artifact://org/LATEST.tmp.1", "reserved"),
        ("s3://bucket/key", "unknown artifact scheme 's3'"),
        ("hf-cache", "not an artifact URI"),
    ],
)
def test_bad_uris_are_refused_with_the_reason(uri: str, fragment: str) -> None:
    with pytest.raises(ArtifactNameError) as info:
        ref_from_uri(uri)
    assert fragment in str(info.value)
    assert isinstance(info.value, UsageError)  # exit code 2


def test_parse_store_name_with_and_without_version() -> None:
    assert parse_store_name("org/proj/cache") == ArtifactRef("artifact", "org/proj/cache")
    assert parse_store_name("org/llama:12", kind="model") == ArtifactRef("model", "org/llama", 12)
    with pytest.raises(ArtifactNameError, match="reserved"):
        parse_store_name("a/versions")
    with pytest.raises(ArtifactNameError, match="invalid component"):
        parse_store_name("a" * 129)
    parse_store_name("a" * 128)


def test_ref_constructor_validates_too() -> None:
    with pytest.raises(ArtifactNameError):
        ArtifactRef("artifact", "../../x")
    with pytest.raises(ArtifactNameError):
        ArtifactRef("blob", "x")  # type: ignore[arg-type]
    with pytest.raises(ArtifactNameError):
        ArtifactRef("artifact", "x", 0)


@given(st.text(max_size=60))
def test_any_accepted_name_stays_inside_the_store(text: str) -> None:
    """Property: a name either raises ArtifactNameError or maps to a dir strictly under <root>/<kind>."""
    try:
        ref = parse_store_name(text)
    except ArtifactNameError:
        return
    root = Path("/store")
    directory = ArtifactLayout(root, ref.kind, ref.name).dir
    assert directory.is_relative_to(root / "artifact")
    assert directory != root / "artifact"
    assert ".." not in directory.parts


@given(
    st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), min_size=1, max_size=4),
    st.integers(min_value=1, max_value=10**6),
)
def test_valid_names_round_trip(parts: list[str], version: int) -> None:
    name = "/".join(parts)
    if any(p.lower() in ("versions", "latest") or p.lower().startswith("latest.tmp") for p in parts):
        with pytest.raises(ArtifactNameError):
            parse_store_name(name)
        return
    assert parse_store_name(f"{name}:{version}") == ArtifactRef("artifact", name, version)
    assert ref_from_uri(f"artifact://{name}") == ArtifactRef("artifact", name)
