"""The typed model: every accepted spelling collapses to one canonical, frozen shape.

Each test writes the same thing several ways and asserts the resulting model objects are equal
(not merely similar), so a second representation sneaking in shows up as a failure.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.manifest import LoadedManifest, Manifest, ManifestError, ManifestRequest, load_manifest
from runner.manifest.model import (
    ArtifactDestination,
    ArtifactSource,
    CommandStep,
    EnvVar,
    GitSource,
    HostPathSource,
    HuggingFaceSource,
    Interactive,
    NfsSource,
    Port,
    Resources,
    Source,
    VolumeDestination,
    VolumeSource,
    WaitStep,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "vessl" / "valid"


def load(tmp_path: Path, body: str, *, resources: str = "resources: {}\n") -> LoadedManifest:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nimage: x\n" + resources + body)
    return load_manifest(ManifestRequest(str(path), process_env={}))


def model(tmp_path: Path, body: str, **options: str) -> Manifest:
    return load(tmp_path, body, **options).manifest


def errors(tmp_path: Path, body: str, *, resources: str = "resources: {}\n") -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nimage: x\n" + resources + body)
    with pytest.raises(ManifestError) as info:
        load_manifest(ManifestRequest(str(path), process_env={}))
    return [line.replace(str(path), "M") for line in info.value.report_lines()]


def sources(tmp_path: Path, section: str, spellings: list[str]) -> list[Source]:
    body = f"{section}:\n" + "".join(f"  /t{i}: {text}\n" for i, text in enumerate(spellings))
    volumes = model(tmp_path, body).imports if section == "import" else model(tmp_path, body).mounts
    assert [v.target for v in volumes] == [f"/t{i}" for i in range(len(spellings))]
    return [v.source for v in volumes]


def all_equal(items: list[object], expected: object) -> None:
    assert items == [expected] * len(items)


# -- import / mount sources -----------------------------------------------------------------------
def test_git_spellings(tmp_path: Path) -> None:
    found = sources(tmp_path, "import", [
        "git://github.com/vessl-ai/examples",
        "{git: {url: https://github.com/vessl-ai/examples}}",
        "{git: {url: github.com/vessl-ai/examples}}",
        "{git: {url: git://github.com/vessl-ai/examples}}",
        "{git: {url: 'HTTPS://GitHub.com/vessl-ai/examples/'}}",
    ])
    assert isinstance(found[0], GitSource)
    assert found[0].url.url == "https://github.com/vessl-ai/examples"
    all_equal(found, found[0])


def test_git_verbose_fields(tmp_path: Path) -> None:
    (source,) = sources(tmp_path, "import", [
        "{git: {url: https://github.com/o/r.git, ref: v1.4.0, credential_name: deploy, submodules: true, depth: 1}}"])
    assert isinstance(source, GitSource)
    assert (source.url.url, source.ref, source.credential_name, source.submodules, source.depth) == (
        "https://github.com/o/r.git", "v1.4.0", "deploy", True, 1)


def test_hugging_face_spellings(tmp_path: Path) -> None:
    models = sources(tmp_path, "import", ["hf://huggingface.co/meta-llama/Llama-2-7b-chat-hf",
                                          "{hf: {url: https://huggingface.co/meta-llama/Llama-2-7b-chat-hf}}",
                                          "{hf: {url: hf://huggingface.co/meta-llama/Llama-2-7b-chat-hf/}}"])
    all_equal(models, HuggingFaceSource("meta-llama/Llama-2-7b-chat-hf", "model"))
    datasets = sources(tmp_path, "import", ["hf://huggingface.co/datasets/rajpurkar/squad",
                                            "{hf: {url: https://huggingface.co/datasets/rajpurkar/squad}}",
                                            "{hf: {url: https://huggingface.co/rajpurkar/squad, repo_type: dataset}}"])
    all_equal(datasets, HuggingFaceSource("rajpurkar/squad", "dataset"))


def test_artifact_spellings(tmp_path: Path) -> None:
    named = sources(tmp_path, "import", [
        "vessl-artifact://my-org/llm-demo/cache",
        "artifact://my-org/llm-demo/cache",
        "{artifact: {organization_name: my-org, project_name: llm-demo, name: cache}}",
        "{artifact: {organization_name: my-org, project_name: llm-demo, artifact_name: cache}}",
    ])
    all_equal(named, ArtifactSource("artifact", "my-org/llm-demo/cache"))
    versioned = sources(tmp_path, "import", ["artifact://cache:3", "{artifact: {name: cache, version: 3}}"])
    all_equal(versioned, ArtifactSource("artifact", "cache", 3))


def test_model_and_dataset_spellings(tmp_path: Path) -> None:
    models = sources(tmp_path, "import", [
        "vessl-model://my-org/llama/2",
        "{model: {organization_name: my-org, model_repository_name: llama, model_number: 2}}"])
    all_equal(models, ArtifactSource("model", "my-org/llama", 2))
    datasets = sources(tmp_path, "import", [
        "vessl-dataset://my-org/imagenet-mini", "{dataset: {organization_name: my-org, dataset_name: imagenet-mini}}"])
    all_equal(datasets, ArtifactSource("dataset", "my-org/imagenet-mini"))


def test_volume_spellings(tmp_path: Path) -> None:
    found = sources(tmp_path, "import", ["volume://vessl-storage/shared-cache",
                                         "{volume: {storage_name: vessl-storage, volume_name: shared-cache}}"])
    all_equal(found, VolumeSource("vessl-storage-shared-cache"))


def test_hostpath_spellings(tmp_path: Path) -> None:
    found = sources(tmp_path, "mount", ["hostpath:///mnt/data/", "{hostpath: {path: /mnt/data}}",
                                        "{hostpath: {path: /mnt//data/.}}"])
    all_equal(found, HostPathSource("/mnt/data"))
    read_only = sources(tmp_path, "mount", ["{hostpath: {path: /mnt/data}, readonly: true}",
                                            "{hostpath: {path: /mnt/data}, options: {readonly: true}}"])
    all_equal(read_only, HostPathSource("/mnt/data", readonly=True))


def test_nfs_spellings(tmp_path: Path) -> None:
    found = sources(tmp_path, "mount", ["nfs://10.0.0.5/exports/models",
                                        "{nfs: {server: 10.0.0.5, path: /exports/models}}"])
    all_equal(found, NfsSource("10.0.0.5", "/exports/models"))


# -- export destinations --------------------------------------------------------------------------
def test_export_spellings(tmp_path: Path) -> None:
    body = ("export:\n  /a1: vessl-artifact://\n  /a2:\n    artifact:\n"
            "  /n1: vessl-artifact://org/proj/out\n  /n2: {artifact: {organization_name: org, project_name: proj, "
            "artifact_name: out}}\n  /n3: {artifact: {organization_name: org, project_name: proj, name: out}}\n"
            "  /m1: vessl-model://org/repo\n  /m2: {model: {organization_name: org, model_repository_name: repo}}\n"
            "  /d1: vessl-dataset://org/ds\n  /d2: {dataset: {organization_name: org, dataset_name: ds}}\n"
            "  /v1: volume://store/vol\n  /v2: {volume: {storage_name: store, volume_name: vol}}\n")
    found = {e.target: e.destination for e in model(tmp_path, body).exports}
    auto, named = ArtifactDestination("artifact", None), ArtifactDestination("artifact", "org/proj/out")
    assert found == {"/a1": auto, "/a2": auto, "/n1": named, "/n2": named, "/n3": named,
                     "/m1": ArtifactDestination("model", "org/repo"), "/m2": ArtifactDestination("model", "org/repo"),
                     "/d1": ArtifactDestination("dataset", "org/ds"), "/d2": ArtifactDestination("dataset", "org/ds"),
                     "/v1": VolumeDestination("store-vol"), "/v2": VolumeDestination("store-vol")}


# -- targets --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "target"), [("/code/", "/code"), ("/code", "/code"), ("//code//x/./y/", "/code/x/y")])
def test_targets_are_normalised(tmp_path: Path, raw: str, target: str) -> None:
    (volume,) = model(tmp_path, f"import:\n  '{raw}': git://github.com/o/r\n").imports
    assert volume.target == target


def test_same_target_twice_is_reported(tmp_path: Path) -> None:
    assert errors(tmp_path, "import:\n  /code/: git://github.com/o/r\n  /code: git://github.com/o/s\n") == [
        'M:6:10: import["/code"]: /code appears twice in import\n'
        "    hint: `/code/` and `/code` are the same path; keep one"]


def test_same_export_target_twice_is_reported(tmp_path: Path) -> None:
    assert errors(tmp_path, "export:\n  /out/: vessl-artifact://\n  /out: artifact://x\n") == [
        'M:6:9: export["/out"]: /out appears twice in export\n    hint: keep one entry']


def test_import_and_mount_on_one_path_is_reported(tmp_path: Path) -> None:
    assert errors(tmp_path, "import:\n  /data/: git://github.com/o/r\nmount:\n  /data: volume://v\n") == [
        'M:7:10: mount["/data"]: /data is both imported and mounted\n    hint: use one of them']


# -- ports ----------------------------------------------------------------------------------------
def test_port_spellings(tmp_path: Path) -> None:
    body = "ports:\n  - 8000\n  - {port: 8001}\n  - {name: port-8002, type: http, port: 8002}\n"
    assert model(tmp_path, body).ports == (Port("port-8000", 8000), Port("port-8001", 8001), Port("port-8002", 8002))


def test_port_map_extensions(tmp_path: Path) -> None:
    body = ("ports:\n  - {name: vllm, type: http, port: 8000, host_port: 18000, host_ip: 127.0.0.1, "
            "health_path: /health}\n  - {name: db, type: tcp, port: 5432}\n")
    assert model(tmp_path, body).ports == (Port("vllm", 8000, "http", 18000, "127.0.0.1", "/health"),
                                          Port("db", 5432, "tcp"))


@pytest.mark.parametrize(("body", "expected"), [
    ("ports:\n  - 8000\n  - {port: 8000}\n", "M:6:5: ports[1]: port 8000 is listed twice"),
    ("ports:\n  - {name: a, port: 1}\n  - {name: a, port: 2}\n", "M:6:12: ports[1].name: port name 'a' is used twice"),
])
def test_duplicate_ports(tmp_path: Path, body: str, expected: str) -> None:
    assert errors(tmp_path, body) == [expected]


# -- run ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    "run: python train.py --epochs 5\n",
    "run:\n  - python train.py --epochs 5\n",
    "run:\n  - command: python train.py --epochs 5\n",
    "run: |-\n  python train.py --epochs 5\n",
])
def test_run_spellings(tmp_path: Path, body: str) -> None:
    assert model(tmp_path, body).steps == (CommandStep("python train.py --epochs 5"),)


def test_run_items_with_workdir_and_wait(tmp_path: Path) -> None:
    body = "run:\n  - command: make\n    workdir: /code/app/\n  - wait: 1h30m\n  - echo done\n"
    assert model(tmp_path, body).steps == (CommandStep("make", "/code/app/"), WaitStep(5400.0, "1h30m"),
                                           CommandStep("echo done"))


# -- env ------------------------------------------------------------------------------------------
def test_env_all_forms_corpus_file() -> None:
    loaded = load_manifest(ManifestRequest(str(CORPUS / "env-all-forms.yaml"), process_env={}))
    assert loaded.manifest.env == (
        EnvVar("MODEL_NAME", "mistralai/Mistral-7B-Instruct-v0.2"),
        EnvVar("epochs", "5"),
        EnvVar("learning_rate", "0.001"),
        EnvVar("use_fp16", "true"),
        EnvVar("EMPTY_VALUE", ""),
        EnvVar("WANDB_KEY", None, secret=True, secret_name="YOUR_WANDB_KEY"),
        EnvVar("DEBUG_FLAG", "1"),
        EnvVar("HF_TOKEN", None, secret=True, secret_name="HF_TOKEN"),
        EnvVar("OPENAI_API_KEY", None, secret=True, secret_name="openai-key"),
        EnvVar("DB_PASSWORD", None, secret=True),
        EnvVar("PROMPT_TEMPLATE", "You are a helpful assistant."),
        EnvVar("API_KEY", None, secret=True, secret_name="API_KEY"),
        EnvVar("TOKENIZERS_PARALLELISM", "false"),
    )
    assert loaded.manifest.secret_env_names == ("WANDB_KEY", "HF_TOKEN", "OPENAI_API_KEY", "DB_PASSWORD", "API_KEY")


# -- resources and GPUs ---------------------------------------------------------------------------
@pytest.mark.parametrize("resources", [
    "resources:\n  gpus: 2\n",
    "resources:\n  accelerators: L4:2\n",
    "resources:\n  requests:\n    nvidia.com/gpu:\n      quantity: 2\n",
    "resources:\n  requests:\n    nvidia.com/gpu: {quantity: '2', device_type: L4}\n  gpus: 2\n",
    "resources:\n  accelerators: L4:2\n  gpus: 2\n",
])
def test_gpu_count_spellings(tmp_path: Path, resources: str) -> None:
    assert model(tmp_path, "", resources=resources).resources.gpu_count == 2


def test_preset_leaves_the_count_to_the_planner(tmp_path: Path) -> None:
    resources = model(tmp_path, "", resources="resources:\n  cluster: vessl-gcp-oregon\n  preset: gpu-l4-small\n")
    assert resources.resources == Resources(cluster="vessl-gcp-oregon", preset="gpu-l4-small")


def test_legacy_preset_name_key(tmp_path: Path) -> None:
    assert model(tmp_path, "", resources="resources:\n  name: gpu-l4-small\n").resources.preset == "gpu-l4-small"


def test_disagreeing_gpu_counts_are_one_error(tmp_path: Path) -> None:
    assert errors(tmp_path, "", resources="resources:\n  accelerators: L4:1\n  gpus: 2\n") == [
        "M:4:3: resources: GPU counts disagree (accelerators=1, gpus=2)\n    hint: give the GPU count once"]


def test_cpu_memory_and_shm_units(tmp_path: Path) -> None:
    resources = model(tmp_path, "", resources="resources:\n  cpu: 500m\n  memory: 16Gi\n  shm_size: 2g\n").resources
    assert (resources.cpu, resources.memory_bytes, resources.shm_size_bytes) == (0.5, 16 << 30, 2 << 30)
    requested = model(tmp_path, "", resources="resources:\n  requests:\n    cpu: '4'\n    memory: 512Mi\n").resources
    assert (requested.cpu, requested.memory_bytes) == (4.0, 512 << 20)


# -- interactive ----------------------------------------------------------------------------------
def test_interactive_durations(tmp_path: Path) -> None:
    assert model(tmp_path, "interactive:\n  max_runtime: 24h\n  jupyter:\n    idle_timeout: 120m\n").interactive == (
        Interactive(max_runtime_s=86400.0, idle_timeout_s=7200.0))


def test_legacy_interactive_runtime_and_ports(tmp_path: Path) -> None:
    loaded = load(tmp_path, "interactive:\n  runtime: 24h\n  ports:\n    - 8501\n    - 8000\nports:\n  - 8000\n")
    assert loaded.manifest.interactive == Interactive(max_runtime_s=86400.0)
    assert loaded.manifest.ports == (Port("port-8000", 8000), Port("port-8501", 8501))
    assert [(w.message, w.hint) for w in loaded.warnings] == [
        ("`interactive.runtime` is the 2023 spelling", "write interactive.max_runtime"),
        ("`interactive.ports` is the 2023 spelling", "move these ports to the top-level `ports` list")]
    assert all(not w.is_error for w in loaded.warnings)


# -- the model itself -----------------------------------------------------------------------------
def test_model_is_frozen_hashable_and_made_of_tuples(tmp_path: Path) -> None:
    manifest = load_manifest(ManifestRequest(str(CORPUS / "import-verbose-all-sources.yaml"), process_env={})).manifest
    hash(manifest)
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.name = "other"  # type: ignore[misc]
    for field in dataclasses.fields(manifest):
        value = getattr(manifest, field.name)
        assert not isinstance(value, (list, dict, set)), field.name


def test_model_equality_ignores_where_the_file_lives(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    one = model(first, "run: echo\n")
    two = model(second, "run: echo\n")
    assert one.base_dir != two.base_dir
    assert one == two


def test_default_name_is_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-job.yaml"
    path.write_text("resources: {}\nimage: x\n")
    assert load_manifest(ManifestRequest(str(path), process_env={})).manifest.name == "my-job"


def test_run_type(tmp_path: Path) -> None:
    assert model(tmp_path, "run: x\n").run_type == "batch"
    assert model(tmp_path, "interactive:\n  max_runtime: 1h\n").run_type == "interactive"
