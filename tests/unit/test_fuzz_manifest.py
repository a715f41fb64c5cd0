"""Fuzzing the manifest pipeline with hypothesis (reliability.md S3): only `ManifestError` escapes.

Three generators: raw bytes through the whole file pipeline, arbitrary text through the loader
and every later stage, and structured documents built from the schema's own vocabulary (sections,
URIs, targets, ports, env forms, placeholders, `${}` expressions, secrets, privilege keys) so the
examples get past the parser into resolution, validation, the model builder and the planner.
A secret canary is planted in env secrets; it must never appear in an error, a warning, the
model or the resolved data. Each example must use under 1 s of CPU (`time.process_time`, robust
on a busy machine); hypothesis' wall-clock deadline (5 s) is only a backstop against hangs. The
`slow` variants run 10x more examples.
"""

from __future__ import annotations

import json
import string
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.manifest import LoadedManifest, ManifestError, ManifestRequest, load_manifest
from runner.manifest.build import build_manifest
from runner.manifest.load import load_manifest_text
from runner.manifest.problems import Problem
from runner.manifest.resolve import ResolveOptions, VariableSources, resolve_manifest
from runner.manifest.template import is_template, render_manifest_template
from runner.manifest.validate import foreign_format_problem, load_schema, privilege_problems, schema_problems
from runner.plan.build import HostFacts, PlanOptions, build_plan

CANARY = "RNRCANARYf00dfacecafe0123456789ab"  # a secret: never in an error, warning, model or plan
URL_PASSWORD = "RNRURLPASSWORD5d1e0c"  # a password in a URL: free text may hold it, an error must not echo it
MAX_CPU_S = 1.0
FAST = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])
SLOW = settings(max_examples=3000, deadline=5000, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


class Store:
    """A secret store holding the canary under every name it is asked about."""

    def has(self, name: str) -> bool:
        return name.startswith("S")

    def read(self, name: str) -> str | None:
        return CANARY if name.startswith("S") else None


def _schema_keys() -> list[str]:
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.update(k for k in node.get("properties", {}) if isinstance(k, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load_schema())
    return sorted(keys)


SCHEMA_KEYS = _schema_keys()
NAMES = ["API_KEY", "HF_TOKEN", "S1", "S2", "MODEL", "lr", "BAD-NAME", "x.y", "secret", "value", "PASSWORD", "_"]
TEXTS = [
    "{API_KEY}", "{S1}", "<YOUR_KEY>", "<your key here>", "${MODEL}", "${MISSING}", "${MISSING:-d}", "${X:?need}",
    "$$", "${", "${1}", "$MODEL", "{{ x }}", "{% if %}", "1.10", "0777", "yes", "", " ", "\t", "a: b", "- x",
    "git://github.com/o/r", "https://github.com/o/r.git", "ext::sh -c id", "--upload-pack=id", "file:///etc",
    "https://u:" + URL_PASSWORD + "@github.com/o/r", "u:" + URL_PASSWORD + "@github.com:o/r",
    "hf://huggingface.co/o/n", "hf://huggingface.co/datasets/o/n",
    "vessl-artifact://", "vessl-artifact://o/p/n", "vessl-artifact://o/../n", "artifact://n:3", "vessl-model://o/r/2",
    "vessl-dataset://o/d", "volume://s/v", "hostpath:///etc", "hostpath:///tmp", "nfs://10.0.0.5/x", "s3://b/p",
    "/code", "/code/", "../x", "10s", "1h30m", "16Gi", "500m", "L4:2", "gpu-l4-small", "cpu-small", "v1.l4-1.mem-42",
    "hf_" + "a" * 34, "sk-" + "b" * 24, "0.0.0.0", "127.0.0.1", "http", "tcp", "SpotOnly",
]
TARGETS = ["/code", "/code/", "/data", "/../etc", "/proc/x", "/run/secrets", "/", "rel/path", "//a//b/./c", "/out"]

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2, max_value=70_000), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(TEXTS),
    st.text(alphabet=string.ascii_letters + string.digits + "${}:-?+<>/._ \t@&*!%|#'\"", max_size=30),
)
placeholder = st.sampled_from(["API_KEY", "S1", "MISSING", "secret"]).map(lambda n: {n: None})
keys = st.one_of(st.sampled_from(SCHEMA_KEYS), st.sampled_from(NAMES), st.text(max_size=8))
anything = st.recursive(leaves | placeholder, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=4), max_leaves=12)


def verbose_source() -> st.SearchStrategy[dict[str, Any]]:
    fields = st.sampled_from(["url", "ref", "credential_name", "name", "artifact_name", "organization_name",
                              "project_name", "model_repository_name", "model_number", "dataset_name", "version",
                              "storage_name", "volume_name", "path", "server", "bucket", "prefix", "repo_type",
                              "revision", "depth", "submodules"])
    kinds = st.sampled_from(["git", "hf", "artifact", "model", "dataset", "volume", "hostpath", "nfs", "s3", "gs",
                             "cifs", "google_disk", "bogus"])
    spec = st.one_of(st.none(), st.sampled_from(TEXTS), st.dictionaries(fields, leaves | placeholder, max_size=4))
    extras = st.fixed_dictionaries({}, optional={"readonly": st.booleans() | leaves,
                                                 "options": st.fixed_dictionaries({}, optional={"readonly": leaves})})
    return st.builds(lambda kind, body, more: {kind: body, **more}, kinds, spec, extras)


volumes = st.dictionaries(st.sampled_from(TARGETS), st.sampled_from(TEXTS) | verbose_source(), max_size=4)
port = st.one_of(st.integers(min_value=-1, max_value=70_001), st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["web", "web", "", "x"]), "type": st.sampled_from(["http", "tcp", "udp", "https"]),
    "port": st.integers(min_value=0, max_value=70_000) | leaves, "host_port": st.integers(-1, 70_000),
    "host_ip": st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "bad"]), "health_path": leaves}))
run_item = st.one_of(st.sampled_from(TEXTS), st.fixed_dictionaries({}, optional={
    "command": leaves, "workdir": st.sampled_from(["/code", "code", "${DIR}", "/"]), "wait": leaves}))
env_value = st.one_of(
    leaves, placeholder,
    st.sampled_from(["S1", "S2", "API_KEY", "MISSING"]).map(lambda n: {"secret": n}),
    st.just({"value": CANARY, "secret": True}),
    st.builds(lambda v, s: {"value": v, "secret": s}, leaves | placeholder, st.booleans()),
    st.just({"source": "inject"}), st.just({"secret_id": 7, "source": "secret"}),
    st.builds(lambda v: {"text": v, "source": "text"}, leaves),
)
secret_named = st.dictionaries(st.sampled_from(["HF_TOKEN", "OPENAI_API_KEY", "DB_PASSWORD", "PASSWORD"]),
                               st.just(CANARY), max_size=2)
env = st.one_of(
    st.builds(lambda plain, secret: {**plain, **secret},
              st.dictionaries(st.sampled_from([*NAMES, "OPENAI_API_KEY", "DB_PASSWORD"]), env_value, max_size=6),
              secret_named),
    st.lists(st.builds(lambda k, v: {"key": k, "value": v}, st.sampled_from(NAMES), leaves | placeholder),
             max_size=4),
)
resources = st.fixed_dictionaries({}, optional={
    "preset": st.sampled_from(TEXTS), "cluster": leaves, "gpus": leaves, "accelerators": st.sampled_from(TEXTS),
    "cpu": leaves, "memory": leaves, "shm_size": leaves, "spot": leaves, "name": leaves,
    "requests": st.dictionaries(st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "nvidia.com/mig"]),
                                leaves | st.fixed_dictionaries({"quantity": leaves}), max_size=3),
    "privileged": st.booleans(),
})
image = st.one_of(st.sampled_from(TEXTS), st.fixed_dictionaries({}, optional={
    "url": st.sampled_from(TEXTS), "credential_name": leaves, "credential_id": leaves,
    "build": st.fixed_dictionaries({}, optional={"context": leaves, "dockerfile": leaves,
                                                 "setup": st.sampled_from(TEXTS) | st.lists(leaves, max_size=2),
                                                 "args": st.dictionaries(st.sampled_from(NAMES), leaves)})}))
documents = st.fixed_dictionaries(
    {"name": leaves, "resources": resources, "image": image},
    optional={"import": volumes, "mount": volumes, "export": volumes, "ports": st.lists(port, max_size=4),
              "run": st.sampled_from(TEXTS) | st.lists(run_item, max_size=4), "env": env,
              "interactive": st.fixed_dictionaries({}, optional={
                  "max_runtime": leaves, "runtime": leaves, "ports": st.lists(port, max_size=2),
                  "jupyter": st.fixed_dictionaries({}, optional={"idle_timeout": leaves})}),
              "termination_protection": leaves, "tags": anything, "description": leaves,
              "volumes": anything, "service": anything, "steps": anything, "api_version": leaves,
              "network_mode": leaves, "cap_add": anything},
).flatmap(lambda doc: st.dictionaries(keys, anything, max_size=2).map(lambda extra: {**extra, **doc}))

MUTATIONS = [
    lambda text: text,
    lambda text: text.replace("  ", "\t"),
    lambda text: text + "---\nname: again\n",
    lambda text: text.replace(": ", ": &a ", 1),
    lambda text: text.replace(": ", ": !!python/object:os.system ", 1),
    lambda text: text[: len(text) // 2],
    lambda text: "{% for i in range(3) %}" + text + "{% endfor %}",
    lambda text: text.replace("\n", "\n\n  ", 1),
]


@pytest.fixture(scope="module", autouse=True)
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="runner-fuzz-") as name:
        path = Path(name)
        # Pay the lazy imports (jsonschema, jinja2, the planner) once here, not inside a timed example.
        warm = b"name: '{{ 1 }}'\nresources: {preset: gpu-l4-small}\nimage: x\nrun: echo\nports: [8000]\n"
        _pipeline_from_file(path / "warm.yaml", warm, strict=True, read_values=True)
        _pipeline_from_text("a: 1\n")
        yield path


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text


def check_loaded(loaded: LoadedManifest) -> None:
    assert_no_canary(repr(loaded.manifest), json.dumps(loaded.resolved_data, default=str),
                     "\n".join(map(str, loaded.warnings)))
    plan_options = PlanOptions(run_id="fuzz", store_id="fuzz", runs_dir=Path("/nonexistent/runs"),
                               runner_home=Path("/nonexistent/home"))
    try:
        plan = build_plan(loaded, plan_options, HostFacts(cpu_count=4))
    except ManifestError as error:
        assert_no_canary(str(error))
        assert URL_PASSWORD not in str(error)
        return
    assert_no_canary(json.dumps(plan.describe(), default=str), repr(plan.container))


@contextmanager
def cpu_bounded() -> Iterator[None]:
    started = time.process_time()
    yield
    used = time.process_time() - started
    assert used < MAX_CPU_S, f"{used:.2f} s of CPU for one example"


def pipeline_from_file(path: Path, data: bytes, *, strict: bool, read_values: bool) -> None:
    with cpu_bounded():
        _pipeline_from_file(path, data, strict=strict, read_values=read_values)


def _pipeline_from_file(path: Path, data: bytes, *, strict: bool, read_values: bool) -> None:
    path.write_bytes(data)
    # Variables are not secrets (`{API_KEY}` may fill an image name), so the canary comes only from the store
    # (`{secret: S…}`, `{S1}` in env), `{value: …, secret: true}` and values under secret-looking names.
    request = ManifestRequest(str(path), env_overrides={"MODEL": "m", "DIR": "/srv"},
                              process_env={}, secret_store=Store(), read_secret_values=read_values, strict=strict)
    try:
        loaded = load_manifest(request)
    except ManifestError as error:
        assert_no_canary(str(error), json.dumps([p.to_json(error.source) for p in error.problems]))
        assert URL_PASSWORD not in str(error)
        return
    check_loaded(loaded)


def pipeline_from_text(text: str) -> None:
    with cpu_bounded():
        _pipeline_from_text(text)


def _pipeline_from_text(text: str) -> None:
    """load → resolve → validate → build, each stage called directly (text may hold lone surrogates)."""
    source = "fuzz.yaml"
    try:
        if is_template(text):
            text = render_manifest_template(text, {}, source)
        document = load_manifest_text(text, source)
        problems: list[Problem] = []
        foreign = foreign_format_problem(document)
        problems += [foreign] if foreign else []
        problems += privilege_problems(document)
        resolved = resolve_manifest(document, ResolveOptions(VariableSources(overrides={"MODEL": "m"}),
                                                             Store(), read_secret_values=True))
        problems += [*resolved.problems, *resolved.unresolved]
        schema = schema_problems(resolved.document)
        reported = {p.path for p in problems}
        problems += [p for p in schema if p.path not in reported]
        # as load_manifest does: the builder only sees sections the schema found nothing wrong with
        manifest, more = build_manifest(resolved.document, default_name="fuzz", base_dir="/nonexistent",
                                        skip_sections=frozenset(str(p.path[0]) for p in schema if p.path),
                                        unfilled=frozenset(p.path for p in resolved.unresolved))
        problems += more
        assert manifest is not None or any(p.is_error for p in more)
        assert_no_canary(repr(manifest), json.dumps(resolved.document.data, default=str),
                         "\n".join(map(str, problems)))
    except ManifestError as error:
        assert_no_canary(str(error))
        assert URL_PASSWORD not in str(error)


# -- the fast tier (CI) ---------------------------------------------------------------------------
@FAST
@given(data=st.binary(max_size=2048), strict=st.booleans())
def test_bytes_through_the_file_pipeline(workdir: Path, data: bytes, strict: bool) -> None:
    pipeline_from_file(workdir / "bytes.yaml", data, strict=strict, read_values=False)


@FAST
@given(text=st.text(max_size=1024))
def test_text_through_every_stage(text: str) -> None:
    pipeline_from_text(text)


@FAST
@given(doc=documents, flow=st.booleans(), mutation=st.sampled_from(range(len(MUTATIONS))), strict=st.booleans(),
       read_values=st.booleans())
def test_structured_documents(workdir: Path, doc: dict[str, Any], flow: bool, mutation: int, strict: bool,
                              read_values: bool) -> None:
    text = MUTATIONS[mutation](yaml.safe_dump(doc, default_flow_style=flow, sort_keys=False, allow_unicode=True))
    pipeline_from_file(workdir / "doc.yaml", text.encode("utf-8", "surrogatepass"), strict=strict,
                       read_values=read_values)
    pipeline_from_text(text)


def test_the_structured_strategy_reaches_the_model(workdir: Path) -> None:
    """Guard against a generator that only ever produces parse errors."""
    reached: list[bool] = []

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(doc=documents)
    def probe(doc: dict[str, Any]) -> None:
        path = workdir / "probe.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        try:
            load_manifest(ManifestRequest(str(path), process_env={}, secret_store=Store()))
            reached.append(True)
        except ManifestError as error:
            reached.append(all(p.position is None or p.path for p in error.problems))

    probe()
    assert sum(reached) >= 20, f"only {sum(reached)} of {len(reached)} examples got past the parser"


# -- the slow tier ----------------------------------------------------------------------------------
@pytest.mark.slow
@SLOW
@given(data=st.binary(max_size=8192), strict=st.booleans())
def test_bytes_through_the_file_pipeline_slow(workdir: Path, data: bytes, strict: bool) -> None:
    pipeline_from_file(workdir / "bytes-slow.yaml", data, strict=strict, read_values=True)


@pytest.mark.slow
@SLOW
@given(text=st.text(max_size=4096))
def test_text_through_every_stage_slow(text: str) -> None:
    pipeline_from_text(text)


@pytest.mark.slow
@SLOW
@given(doc=documents, flow=st.booleans(), mutation=st.sampled_from(range(len(MUTATIONS))), strict=st.booleans(),
       read_values=st.booleans())
def test_structured_documents_slow(workdir: Path, doc: dict[str, Any], flow: bool, mutation: int, strict: bool,
                                   read_values: bool) -> None:
    text = MUTATIONS[mutation](yaml.safe_dump(doc, default_flow_style=flow, sort_keys=False, allow_unicode=True))
    pipeline_from_file(workdir / "doc-slow.yaml", text.encode("utf-8", "surrogatepass"), strict=strict,
                       read_values=read_values)
