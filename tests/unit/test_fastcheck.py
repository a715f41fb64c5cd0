"""The fast schema check must agree with jsonschema exactly: on the corpus, and on mutated documents."""

from __future__ import annotations

import copy
import glob
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.manifest.fastcheck import Unsupported, is_valid
from runner.manifest.validate import load_schema

SCHEMA = load_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


def _corpus() -> list[tuple[str, Any]]:
    docs = []
    for path in sorted(glob.glob("tests/data/vessl/*/*.yaml") + glob.glob("manifests/*.yaml")):
        text = Path(path).read_text(encoding="utf-8").replace("\t", "  ")
        try:
            docs.append((path, yaml.safe_load(text)))
        except yaml.YAMLError:
            continue  # templates: rendered before validation, covered elsewhere
    return docs


CORPUS = _corpus()
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=False, width=32),
                    st.sampled_from(["", "http", "tcp", "udp", "main", "/code", "8000", "x", "{A}", "SpotOnly",
                                     "git://github.com/o/r", "hf://huggingface.co/o/n", "vessl-artifact://o/p/n",
                                     "artifact://a", "24h", "10s", "L4:1", "gpu-l4-small", "artifact"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["port", "name", "type", "command", "workdir", "wait", "url", "ref", "git",
                                     "secret", "value", "source", "artifact", "max_runtime", "jupyter", "cpu",
                                     "memory", "nvidia.com/gpu", "quantity", "device_type", "build", "context",
                                     "setup", "readonly", "hostpath", "path", "UNKNOWN"]), inner, max_size=3)),
    max_leaves=8)


def test_the_corpus_is_not_trivial() -> None:
    assert len(CORPUS) > 60
    assert any(not VALIDATOR.is_valid(doc) for _, doc in CORPUS)
    assert any(VALIDATOR.is_valid(doc) for _, doc in CORPUS)


@pytest.mark.parametrize(("path", "doc"), CORPUS, ids=[p for p, _ in CORPUS])
def test_agrees_with_jsonschema_on_the_corpus(path: str, doc: Any) -> None:
    assert is_valid(SCHEMA, doc) is VALIDATOR.is_valid(doc)


def _mutate(doc: Any, choices: list[int], value: Any) -> Any:
    """Walk down the document by `choices` and replace, delete or add at the node reached."""
    doc = copy.deepcopy(doc)
    node = doc
    for choice in choices[:-1]:
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(
            node, list) else []
        containers = [(k, v) for k, v in children if isinstance(v, (dict, list))]
        if not containers:
            break
        _, node = containers[choice % len(containers)]
    action = choices[-1] % 3
    if isinstance(node, dict):
        keys = list(node)
        if action == 0 and keys:
            node[keys[choices[0] % len(keys)]] = value
        elif action == 1 and keys:
            del node[keys[choices[0] % len(keys)]]
        else:
            node["added" if choices[0] % 2 else "name"] = value
    elif isinstance(node, list) and node:
        node[choices[0] % len(node)] = value
    return doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, 10_000), choices=st.lists(st.integers(0, 100), min_size=1, max_size=6), value=VALUES)
def test_agrees_with_jsonschema_on_mutated_documents(index: int, choices: list[int], value: Any) -> None:
    _, doc = CORPUS[index % len(CORPUS)]
    mutated = _mutate(doc, choices, value)
    assert is_valid(SCHEMA, mutated) is VALIDATOR.is_valid(mutated), mutated


@settings(max_examples=500, deadline=None)
@given(value=VALUES)
def test_agrees_with_jsonschema_on_arbitrary_values(value: Any) -> None:
    assert is_valid(SCHEMA, value) is VALIDATOR.is_valid(value)


def test_an_unknown_keyword_is_reported_not_guessed() -> None:
    with pytest.raises(Unsupported):
        is_valid({"format": "email"}, "x")


def test_validating_a_valid_manifest_does_not_import_jsonschema() -> None:
    code = ("import sys; from runner.cli.main import main; rc = main(['validate', '-f', 'manifests/hello.yaml']); "
            "sys.exit(3 if 'jsonschema' in sys.modules else rc)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
