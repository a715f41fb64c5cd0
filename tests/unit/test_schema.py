"""The public manifest contract, `schemas/run.schema.json`, against VESSL's forms and runner's examples.

Corpus layout (`tests/data/vessl/`): `valid/` VESSL-style Run manifests that must validate; `invalid/`
manifests that must fail, each with a `.expect` file listing the dotted paths where errors must be
reported; `other/` service, pipeline and 2023-syntax files that are not Run manifests; `templates/`
Jinja manifests with `<name>.vars.json`. Files are read the way the VESSL CLI reads them: tabs become
two spaces, then `yaml.safe_load`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import pytest
import yaml
from jsonschema import Draft202012Validator

from runner.manifest.problems import format_path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "schemas" / "run.schema.json"
CORPUS = ROOT / "tests" / "data" / "vessl"
MANIFESTS = ROOT / "manifests"

SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)

# JSON pointers of every node marked "x-runner-extension"; adding an extension means adding it here.
EXPECTED_EXTENSIONS = {
    "/$defs/resources/properties/accelerators",
    "/$defs/resources/properties/gpus",
    "/$defs/resources/properties/cpu",
    "/$defs/resources/properties/memory",
    "/$defs/resources/properties/shm_size",
    "/$defs/imageMap/properties/build",
    "/$defs/imageBuild",
    "/$defs/gitSource/properties/submodules",
    "/$defs/gitSource/properties/depth",
    "/$defs/hfSource/properties/revision",
    "/$defs/hfSource/properties/repo_type",
    "/$defs/artifactImport/properties/version",
    "/$defs/portMap/properties/host_port",
    "/$defs/portMap/properties/host_ip",
    "/$defs/portMap/properties/health_path",
    "/$defs/artifactUri",
}

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def dotted(path: Any) -> str:
    """`ports[0].port`, `import["/code"].git`; `(root)` for the document (as runner prints paths)."""
    return format_path(tuple(path))


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8").replace("\t", "  ")


def load(path: Path) -> Any:
    return yaml.safe_load(read_text(path))


def error_paths(document: Any) -> set[str]:
    return {dotted(error.absolute_path) for error in VALIDATOR.iter_errors(document)}


def problems(document: Any) -> list[str]:
    """Every schema error as `path: message`, so a failing assert shows all of them."""
    return [f"{dotted(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]


def corpus(kind: str, pattern: str = "*.yaml") -> list[Path]:
    return sorted((CORPUS / kind).glob(pattern))


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# ----------------------------------------------------------------------------- schema structure

_MAP_KEYWORDS = ("properties", "patternProperties", "$defs")
_SCHEMA_KEYWORDS = ("items", "additionalProperties", "propertyNames", "contains")
_IN_PLACE_KEYWORDS = ("then", "else", "not")
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")


@dataclass(frozen=True)
class Node:
    """A subschema, where it is, and what its instance location declares."""

    pointer: str
    schema: Any
    in_if: bool  # inside an `if`: a discriminator, not documentation
    in_place: bool  # reached through then/else/not/allOf/anyOf/oneOf: constrains the same instance
    declared: frozenset[str]  # property names declared for this instance location


def walk(schema: Any, pointer: str = "", in_if: bool = False, in_place: bool = False,
         declared: frozenset[str] = frozenset()) -> Iterator[Node]:
    if not isinstance(schema, dict):
        yield Node(pointer, schema, in_if, in_place, declared)
        return
    own = frozenset(schema.get("properties", {}))
    here = (declared | own) if in_place else own
    yield Node(pointer, schema, in_if, in_place, here)
    for keyword in _MAP_KEYWORDS:
        for name, child in schema.get(keyword, {}).items():
            yield from walk(child, f"{pointer}/{keyword}/{name}", in_if)
    for keyword in _SCHEMA_KEYWORDS:
        if keyword in schema:
            yield from walk(schema[keyword], f"{pointer}/{keyword}", in_if)
    for keyword in _IN_PLACE_KEYWORDS:
        if keyword in schema:
            yield from walk(schema[keyword], f"{pointer}/{keyword}", in_if, True, here)
    if "if" in schema:
        yield from walk(schema["if"], f"{pointer}/if", True, True, here)
    for keyword in _IN_PLACE_LISTS:
        for index, child in enumerate(schema.get(keyword, [])):
            yield from walk(child, f"{pointer}/{keyword}/{index}", in_if, True, here)


def documented(schema: Any) -> bool:
    return isinstance(schema, dict) and isinstance(schema.get("description"), str) and bool(
        schema["description"].strip())


def test_schema_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == "https://runner.dev/schemas/run.schema.json"
    assert documented(SCHEMA) and SCHEMA.get("title")
    assert set(SCHEMA["required"]) == {"image", "resources"}


def test_every_property_and_definition_has_a_description() -> None:
    missing = []
    for node in walk(SCHEMA):
        if node.in_if or not isinstance(node.schema, dict):
            continue
        for keyword in _MAP_KEYWORDS:
            for name, child in node.schema.get(keyword, {}).items():
                if not documented(child):
                    missing.append(f"{node.pointer}/{keyword}/{name}")
    assert not missing, f"undocumented: {missing}"


def test_every_object_level_decides_on_unknown_keys() -> None:
    open_objects = []
    for node in walk(SCHEMA):
        if node.in_if or not isinstance(node.schema, dict):
            continue
        types = node.schema.get("type", [])
        is_object = "object" in (types if isinstance(types, list) else [types])
        if (is_object or ("properties" in node.schema and not node.in_place)) and (
                "additionalProperties" not in node.schema):
            open_objects.append(node.pointer)
    assert not open_objects, f"objects without additionalProperties: {open_objects}"


def test_conditions_only_name_declared_properties() -> None:
    """then/else/allOf/oneOf branches restate rules about keys the object declares (with a description)."""
    strays = []
    for node in walk(SCHEMA):
        if not node.in_place or node.in_if or not isinstance(node.schema, dict) or not node.declared:
            continue
        named = set(node.schema.get("properties", {})) | set(node.schema.get("required", []))
        strays += [f"{node.pointer}: {name}" for name in sorted(named - node.declared)]
    assert not strays, strays


def test_required_keys_are_declared() -> None:
    strays = []
    for node in walk(SCHEMA):
        if isinstance(node.schema, dict) and node.schema.get("additionalProperties") is False:
            required = node.schema.get("required", [])
            strays += [f"{node.pointer}: {k}" for k in required if k not in node.declared]
    assert not strays, strays


def test_runner_extensions_are_marked_and_described() -> None:
    marked = set()
    for node in walk(SCHEMA):
        if not isinstance(node.schema, dict):
            continue
        description = node.schema.get("description", "")
        if node.schema.get("x-runner-extension") is True:
            marked.add(node.pointer)
            assert description.startswith("runner extension:"), node.pointer
        else:
            assert not description.startswith("runner extension:"), f"unmarked extension {node.pointer}"
    assert marked == EXPECTED_EXTENSIONS


def test_top_level_keys_are_exactly_vessls_run_spec() -> None:
    """`V1RunSpecFormBodyInput`'s attributes; runner's extensions live below the top level."""
    assert set(SCHEMA["properties"]) == {
        "name", "description", "tags", "resources", "image", "import", "mount", "export", "run",
        "interactive", "ports", "env", "service_account_name", "termination_protection",
    }


# ----------------------------------------------------------------------------- the corpus

VALID = corpus("valid")
INVALID = corpus("invalid")
OTHER = corpus("other")
TEMPLATES = corpus("templates")
EXAMPLES = sorted(MANIFESTS.glob("*.yaml"))


def test_corpus_sizes() -> None:
    assert len(VALID) >= 30
    assert len(INVALID) >= 15
    assert len(TEMPLATES) >= 2
    assert len(OTHER) >= 8
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("path", VALID, ids=ids(VALID))
def test_valid_manifest_validates(path: Path) -> None:
    assert not problems(load(path))


@pytest.mark.parametrize("path", EXAMPLES, ids=ids(EXAMPLES))
def test_example_manifest_validates(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith("#"), "an example starts by saying what it shows"
    assert not problems(load(path))


@pytest.mark.parametrize("path", INVALID, ids=ids(INVALID))
def test_invalid_manifest_fails_at_the_expected_paths(path: Path) -> None:
    expected = [line.strip() for line in path.with_suffix(".expect").read_text().splitlines() if line.strip()]
    assert expected, "an .expect file names at least one path"
    found = error_paths(load(path))
    assert found, "the manifest must not validate"
    assert set(expected) <= found


def test_every_invalid_file_has_an_expect_file() -> None:
    expects = {p.stem for p in corpus("invalid", "*.expect")}
    assert expects == {p.stem for p in INVALID}


_OTHER_MARKERS = {
    "service": {"service", "autoscaling", "launch_immediately", "message"},
    "pipeline": {"api_version", "steps"},
    "legacy": {"volumes"},
}


@pytest.mark.parametrize("path", OTHER, ids=ids(OTHER))
def test_other_formats_are_not_run_manifests(path: Path) -> None:
    """They fail on the key that identifies their kind, reported as an unknown top-level key."""
    document = load(path)
    kind = path.name.split("-")[0]
    unknown = set(document) - set(SCHEMA["properties"])
    assert unknown & _OTHER_MARKERS[kind], f"{kind} file without its marker key"
    assert any(e.validator == "additionalProperties" and not e.absolute_path
               for e in VALIDATOR.iter_errors(document))


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_template_renders_with_its_variables_and_validates(path: Path) -> None:
    source = read_text(path)
    assert "{{" in source
    variables = json.loads(path.with_name(f"{path.stem}.vars.json").read_text(encoding="utf-8"))
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined,
                                                       keep_trailing_newline=True)
    rendered = env.from_string(source).render(**variables)
    document = yaml.safe_load(rendered)
    assert not problems(document)
    assert "{{" not in json.dumps(document)


# ----------------------------------------------------------------------------- form coverage

def _uri_form(uri: str) -> str:
    if uri.startswith("hf://huggingface.co/datasets/"):
        return "hf-dataset"
    scheme, _, rest = uri.partition("://")
    return f"{scheme}-bare" if not rest else scheme


def _volume_forms(section: str, mapping: dict[str, Any] | None) -> Iterator[str]:
    for path, source in (mapping or {}).items():
        yield f"{section}:path-{'slash' if path.endswith('/') else 'noslash'}"
        if isinstance(source, str):
            yield f"{section}:uri:{_uri_form(source)}"
            continue
        for key, value in source.items():
            yield f"{section}:{key}"
            if isinstance(value, dict):
                yield from (f"{section}:{key}.{field}" for field in value)
                if any(isinstance(v, dict) for v in value.values()):
                    yield "placeholder-in-source"
            elif value is None:
                yield f"{section}:{key}=null"


def _env_forms(env: Any) -> Iterator[str]:
    if isinstance(env, list):
        yield "env:list"
        return
    for value in (env or {}).values():
        if isinstance(value, dict):
            keys = "+".join(sorted(value))
            if len(value) == 1 and next(iter(value.values())) is None and keys not in ("secret", "value"):
                yield "env:placeholder"
            elif isinstance(value.get("secret"), bool):
                yield f"env:value+secret={str(value['secret']).lower()}"
            else:
                yield f"env:{keys}"
        else:
            yield f"env:{type(value).__name__}"


def _run_forms(run: Any) -> Iterator[str]:
    if isinstance(run, str):
        yield "run:string"
        return
    for item in run or []:
        yield "run:bare-string" if isinstance(item, str) else "run:" + "+".join(sorted(item))


def _port_forms(ports: Any) -> Iterator[str]:
    for port in ports or []:
        if isinstance(port, int):
            yield "ports:int"
        else:
            yield "ports:" + "+".join(sorted(k for k in port if k in ("name", "type", "port")))
            if "type" in port:
                yield f"ports:type={port['type']}"


def _resource_forms(resources: dict[str, Any]) -> Iterator[str]:
    for key, value in resources.items():
        yield f"resources:{key}"
        if key == "spot":
            yield f"resources:spot={value!r}"
        if key == "requests":
            yield from (f"resources:requests.{k}" for k in value)


def forms(text: str, document: dict[str, Any]) -> set[str]:
    """The VESSL spellings a manifest uses, named so the corpus can be checked for coverage."""
    found = {f"top:{key}" for key in document}
    if re.search(r"^tags: *\[", text, re.M):
        found.add("tags:flow")
    if re.search(r"^tags: *\n +- ", text, re.M):
        found.add("tags:block")
    if document.get("description") == "":
        found.add("description:empty")
    image = document["image"]
    found |= {"image:string"} if isinstance(image, str) else {f"image:{k}" for k in image}
    found |= set(_resource_forms(document["resources"]))
    for section in ("import", "mount", "export"):
        found |= set(_volume_forms(section, document.get(section)))
    found |= set(_run_forms(document.get("run")))
    found |= set(_port_forms(document.get("ports")))
    found |= set(_env_forms(document.get("env")))
    interactive = document.get("interactive") or {}
    found |= {f"interactive:{k}={'null' if v is None else type(v).__name__}" for k, v in interactive.items()}
    return found


EXPECTED_FORMS = {
    *(f"top:{key}" for key in SCHEMA["properties"]),
    "tags:flow", "tags:block", "description:empty",
    "image:string", "image:url", "image:credential_name", "image:credential_id", "image:image_id",
    "resources:cluster", "resources:preset", "resources:name", "resources:node_names",
    "resources:cluster_id", "resources:preset_id", "resources:node_id", "resources:accelerators",
    "resources:cpu", "resources:memory", "resources:requests.cpu", "resources:requests.memory",
    "resources:requests.nvidia.com/gpu", "resources:requests.nvidia.com/mig",
    "resources:spot=''", "resources:spot='SpotOnly'", "resources:spot='SpotFirst'",
    "resources:spot='OnDemandOnly'",
    "import:path-slash", "import:path-noslash",
    *(f"import:uri:{s}" for s in ("git", "hf", "hf-dataset", "vessl-artifact", "vessl-artifact-bare",
                                  "vessl-model", "vessl-dataset", "s3", "gs", "volume")),
    "import:git.url", "import:git.ref", "import:git.credential_name", "import:hf.url",
    "import:artifact.name", "import:artifact.organization_name", "import:artifact.project_name",
    "import:model.model_number", "import:dataset.dataset_name", "import:s3.endpoint", "import:s3.prefix",
    "import:gs.bucket", "import:volume.needs_inject", "placeholder-in-source",
    *(f"mount:uri:{s}" for s in ("vessl-dataset", "hostpath", "nfs", "volume")),
    *(f"mount:{k}" for k in ("dataset", "hostpath", "nfs", "cifs", "google_disk", "container_storage",
                             "gcs_fuse", "volume", "block_storage", "readonly", "options")),
    *(f"export:uri:{s}" for s in ("vessl-artifact", "vessl-artifact-bare", "vessl-dataset", "vessl-model",
                                  "s3", "gs", "volume")),
    "export:artifact=null", "export:artifact.artifact_name", "export:dataset", "export:model", "export:s3",
    "export:gs", "export:volume",
    "run:string", "run:bare-string", "run:command+workdir", "run:command", "run:wait",
    "interactive:max_runtime=str", "interactive:jupyter=dict", "interactive:jupyter=null",
    "interactive:idle_timeout=str", "interactive:runtime=str", "interactive:ports=list",
    "ports:int", "ports:port", "ports:name+port+type", "ports:type=http", "ports:type=tcp", "ports:type=udp",
    "env:str", "env:int", "env:float", "env:bool", "env:NoneType", "env:placeholder", "env:list",
    "env:value+secret=true", "env:value+secret=false", "env:secret", "env:secret+source",
    "env:source", "env:source+text", "env:secret_id+source",
    "export:path-slash", "export:path-noslash", "mount:path-slash", "mount:path-noslash", "ports:name+port",
    # runner extensions used by runner-only files in valid/
    "resources:gpus", "resources:shm_size", "image:build", "import:git.depth", "import:git.submodules",
    "import:hf.revision", "import:hf.repo_type", "import:artifact.version", "import:uri:artifact",
    "export:uri:artifact",
}


def test_valid_corpus_covers_every_vessl_form() -> None:
    seen: set[str] = set()
    for path in VALID:
        seen |= forms(read_text(path), load(path))
    missing = sorted(EXPECTED_FORMS - seen)
    assert not missing, f"no valid/ file uses: {missing}"


# ----------------------------------------------------------------------------- focused cases

BASE = {"name": "case", "resources": {"preset": "cpu-small"}, "image": "busybox:1"}


def case(overrides: str) -> dict[str, Any]:
    return {**BASE, **yaml.safe_load(overrides)}


ACCEPTED = {
    "placeholder env value": "env: {API_KEY: {API_KEY}}",
    "masked placeholder": "env: {K: {value: {YOUR_KEY}, secret: true}}",
    "secret by id": "env: {K: {secret_id: 7}}",
    "null sections": "{import: null, export: null, mount: null, ports: null, env: null, run: null}",
    "null tags and description": "{tags: null, description: null, service_account_name: null}",
    "run as one string": "run: python main.py",
    "empty run list": "run: []",
    "chained wait": "run: [{wait: 1h30m}, {wait: 5}]",
    "build with context needs no url": "image: {build: {context: .}}",
    "setup as one string": "image: {url: python:3.11, build: {setup: pip install vllm}}",
    "any free host port": "ports: [{port: 8000, host_port: 0, host_ip: '::1'}]",
    "artifact uri with version": "import: {/w: 'artifact://hf-cache:3'}",
    "artifact_name on import": "import: {/w: {artifact: {artifact_name: cache, version: 1}}}",
    "export artifact by name": "export: {/o: {artifact: {name: results}}}",
    "gpu count as int": "resources: {requests: {nvidia.com/gpu: {quantity: 1}}}",
    "memory in bytes": "resources: {memory: 1073741824, cpu: 0.5, shm_size: 2g}",
}

REJECTED = {
    "secret name with a value": ("env: {K: {secret: HF_TOKEN, value: x}}", "env.K.value"),
    "mask flag without value": ("env: {K: {secret: true}}", "env.K"),
    "secret source without a secret": ("env: {K: {source: secret}}", "env.K"),
    "text source without text": ("env: {K: {source: text}}", "env.K"),
    "secret name with text source": ("env: {K: {secret: HF_TOKEN, source: text}}", "env.K.source"),
    "unknown env source": ("env: {K: {source: vault}}", "env.K.source"),
    "placeholder with a value": ("env: {K: {NAME: 1}}", "env.K.NAME"),
    "two-key placeholder": ("env: {K: {A: null, B: null}}", "env.K"),
    "placeholder named like a key": ("env: {K: {value}}", "env.K.value"),
    "secret placeholder": ("env: {K: {secret}}", "env.K.secret"),
    "legacy runtime with max_runtime": ("interactive: {runtime: 24h, max_runtime: 24h}",
                                        "interactive.max_runtime"),
    "legacy ports in modern interactive": ("interactive: {max_runtime: 24h, ports: [8501]}",
                                           "interactive.ports"),
    "bad duration": ("interactive: {max_runtime: one day}", "interactive.max_runtime"),
    "setup without url": ("image: {build: {setup: [pip install x]}}", "image"),
    "numeric build arg": ("image: {build: {context: ., args: {N: 1}}}", "image.build.args.N"),
    "bare artifact uri": ("import: {/w: 'artifact://'}", 'import["/w"]'),
    "hf on another host": ("import: {/m: 'hf://github.com/org/model'}", 'import["/m"]'),
    "hostpath import": ("import: {/m: 'hostpath:///data'}", 'import["/m"]'),
    "mount without source": ("mount: {/m: {readonly: true}}", 'mount["/m"]'),
    "artifact import without name": ("import: {/w: {artifact: {project_name: p}}}", 'import["/w"].artifact'),
    "zero depth": ("import: {/c: {git: {url: 'https://x/y.git', depth: 0}}}", 'import["/c"].git.depth'),
    "bad repo_type": ("import: {/m: {hf: {url: x, repo_type: space}}}", 'import["/m"].hf.repo_type'),
    "relative health path": ("ports: [{port: 80, health_path: health}]", "ports[0].health_path"),
    "port as string": ("ports: ['8000']", "ports[0]"),
    "negative gpus": ("resources: {gpus: -1}", "resources.gpus"),
    "accelerator without count": ("resources: {accelerators: L4}", "resources.accelerators"),
    "run as a map": ("run: {command: echo}", "run"),
    "empty command": ("run: [{command: ''}]", "run[0].command"),
}


@pytest.mark.parametrize("overrides", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_forms(overrides: str) -> None:
    assert not problems(case(overrides))


@pytest.mark.parametrize(("overrides", "where"), REJECTED.values(), ids=REJECTED.keys())
def test_rejected_forms(overrides: str, where: str) -> None:
    assert where in error_paths(case(overrides))
