"""`runner build` and `image.build` on the real engine: content-hash tags, skip when unchanged, rebuild on any
input change (but not on .dockerignored files), failing steps named, BuildKit-only syntax refused clearly,
`-t`, setup builds rendered with jinja2, and `runner create` building then reusing the image.

Every image a test builds carries the test's label (a `LABEL` right after `FROM`, so even the intermediate
images a failed build leaves behind have it) or a test-unique tag; the `built_images` fixture removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import ImageNotFound, NotFound

from runner.builds import BUILD_HASH_LABEL, render_setup_dockerfile

RUNNER = str(Path(sys.executable).with_name("runner"))
CLI_TIMEOUT_S = 180


@dataclass
class Cli:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def runner(home: Path, *args: str, cwd: Path | None = None) -> Cli:
    env = {**os.environ, "RUNNER_HOME": str(home)}
    done = subprocess.run([RUNNER, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=CLI_TIMEOUT_S, check=False)
    return Cli(done.returncode, done.stdout, done.stderr)


@dataclass
class Project:
    """A build context and a manifest next to it, unique to one test."""

    root: Path
    marker: str  # unique per test; baked into the files so every hash (and image) is new
    label: str  # `ai.runner.test=<uuid>`
    base: str

    @property
    def context(self) -> Path:
        return self.root / "ctx"

    @property
    def manifest(self) -> Path:
        return self.root / "run.yaml"

    def write_dockerfile(self, body: str) -> None:
        key, value = self.label.split("=", 1)
        head = f"FROM {self.base}\nLABEL {key}={value}\n"
        (self.context / "Dockerfile").write_text(head + textwrap.dedent(body))

    def write_manifest(self, *, args: dict[str, str] | None = None, command: str = "cat /hello.txt /greeting",
                       tag: str | None = None) -> None:
        lines = [f"name: build-{self.marker[:8]}", "resources: {}", "image:", "  build:", "    context: ctx"]
        if args:
            lines.append("    args:")
            lines += [f"      {name}: {json.dumps(value)}" for name, value in args.items()]
        if tag:
            lines.append(f"    tag: {tag}")
        lines += ["run:", f"  - command: {json.dumps(command)}"]
        self.manifest.write_text("\n".join(lines) + "\n")


SIMPLE_DOCKERFILE = """\
ARG GREETING=hi
COPY hello.txt /hello.txt
RUN echo "$GREETING" > /greeting
"""


@pytest.fixture
def built_images(docker_client: docker.DockerClient, test_label: str) -> Iterator[set[str]]:
    """Tags the test adds here, plus every image carrying the test label, are removed at the end."""
    tags: set[str] = set()
    yield tags
    for tag in tags:
        with contextlib.suppress(ImageNotFound, NotFound):
            docker_client.images.remove(tag, force=True)
    labelled = docker_client.images.list(all=True, filters={"label": test_label})
    for image in sorted(labelled, key=lambda i: i.attrs.get("Created", ""), reverse=True):
        with contextlib.suppress(ImageNotFound, NotFound):
            docker_client.images.remove(image.id, force=True)
    assert docker_client.images.list(all=True, filters={"label": test_label}) == []


@pytest.fixture
def project(tmp_path: Path, test_label: str, busybox_image: str) -> Project:
    proj = Project(root=tmp_path / "project", marker=uuid.uuid4().hex, label=test_label, base=busybox_image)
    proj.context.mkdir(parents=True)
    (proj.context / "hello.txt").write_text(f"hello {proj.marker}\n")
    (proj.context / ".dockerignore").write_text("scratch/\n*.tmp\n")
    (proj.context / "scratch").mkdir()
    (proj.context / "scratch" / "notes.txt").write_text("ignored\n")
    proj.write_dockerfile(SIMPLE_DOCKERFILE)
    proj.write_manifest(args={"GREETING": "hey"})
    return proj


def build(home: Path, proj: Project, built: set[str], *extra: str) -> dict[str, Any]:
    result = runner(home, "build", "-f", str(proj.manifest), "--json", *extra)
    assert result.code == 0, result.err
    document: dict[str, Any] = result.json()
    built.add(document["image"])
    return document


def image_id(client: docker.DockerClient, ref: str) -> str:
    return str(client.images.get(ref).id)


def cat_in(client: docker.DockerClient, ref: str, *paths: str) -> str:
    output = client.containers.run(ref, ["cat", *paths], remove=True, labels={"ai.runner.test": "build-cat"})
    return output.decode() if isinstance(output, bytes) else str(output)


def test_context_build_is_labelled_and_skipped_when_unchanged(
        docker_client: docker.DockerClient, runner_home: Path, project: Project, built_images: set[str]):
    first = build(runner_home, project, built_images)
    ref = first["image"]
    assert first["built"] is True
    image = docker_client.images.get(ref)
    digest = image.labels[BUILD_HASH_LABEL]
    assert len(digest) == 64 and ref.endswith(":" + digest[:16]), (ref, digest)
    # COPY brought the file in; the build arg reached the RUN step.
    assert cat_in(docker_client, ref, "/hello.txt", "/greeting") == f"hello {project.marker}\nhey\n"

    again = runner(runner_home, "build", "-f", str(project.manifest))
    assert again.code == 0, again.err
    assert "up to date" in again.err and "build skipped" in again.err, again.err
    assert "Step 1/" not in again.err  # nothing was sent to the builder
    assert not again.out.startswith("built"), again.out
    assert image_id(docker_client, ref) == image.id
    assert build(runner_home, project, built_images) == {"image": ref, "built": False}


@pytest.mark.parametrize("change", ["context file", "build arg", "dockerfile", "dockerignored file"])
def test_rebuild_follows_the_inputs(
        change: str, docker_client: docker.DockerClient, runner_home: Path, project: Project,
        built_images: set[str]):
    before = build(runner_home, project, built_images)["image"]
    before_id = image_id(docker_client, before)
    if change == "context file":
        (project.context / "hello.txt").write_text("changed\n")
    elif change == "build arg":
        project.write_manifest(args={"GREETING": "bonjour"})
    elif change == "dockerfile":
        project.write_dockerfile(SIMPLE_DOCKERFILE + "RUN echo more > /more\n")
    else:
        (project.context / "scratch" / "notes.txt").write_text("edited, but .dockerignore drops it\n")
        (project.context / "draft.tmp").write_text("new, but .dockerignore drops it\n")

    after = build(runner_home, project, built_images)
    if change == "dockerignored file":
        assert after == {"image": before, "built": False}
        assert image_id(docker_client, before) == before_id
        return
    assert after["built"] is True
    assert after["image"] != before, "a changed input must give a new content-hash tag"
    new = docker_client.images.get(after["image"])
    assert new.id != before_id
    assert new.labels[BUILD_HASH_LABEL] != docker_client.images.get(before).labels[BUILD_HASH_LABEL]
    expected = {"context file": "changed\nhey\n", "build arg": f"hello {project.marker}\nbonjour\n",
                "dockerfile": f"hello {project.marker}\nhey\n"}[change]
    assert cat_in(docker_client, after["image"], "/hello.txt", "/greeting") == expected


def test_failing_step_is_named_with_its_last_output(runner_home: Path, project: Project, built_images: set[str]):
    project.write_dockerfile(f"""\
        RUN echo line-one && echo line-two
        RUN echo about-to-fail-{project.marker} && echo oops >&2 && exit 3
        RUN echo never
        """)
    result = runner(runner_home, "build", "-f", str(project.manifest))
    assert result.code == 1, (result.code, result.err)
    # Steps: FROM, LABEL (ours), RUN, RUN (fails), RUN, LABEL (build hash) = 6.
    assert (f"build failed at Step 4/6 : RUN echo about-to-fail-{project.marker} && echo oops >&2 && exit 3"
            in result.err), result.err
    assert "returned a non-zero code: 3" in result.err
    hint = result.err.split("last output:", 1)[1]
    assert f"about-to-fail-{project.marker}" in hint and "oops" in hint, hint
    assert "never" not in hint
    assert "Traceback" not in result.err


def test_buildkit_only_dockerfile_is_refused_clearly(runner_home: Path, project: Project, built_images: set[str]):
    project.write_dockerfile("RUN --mount=type=cache,target=/x true\n")
    result = runner(runner_home, "build", "-f", str(project.manifest))
    assert result.code == 1, (result.code, result.err)
    assert "Step 3/4 : RUN --mount=type=cache,target=/x true" in result.err, result.err
    assert "requires BuildKit" in result.err
    # ...and says what to do with runner (enabling BuildKit in docker does not help a docker-py build).
    assert "classic builder" in result.err and "image.url" in result.err, result.err


def test_tag_option_names_the_image(
        docker_client: docker.DockerClient, runner_home: Path, project: Project, built_images: set[str]):
    tag = f"runner-test/build-tag-{project.marker[:12]}:v1"
    built_images.add(tag)
    result = runner(runner_home, "build", "-f", str(project.manifest), "-t", tag)
    assert result.code == 0, result.err
    assert result.out.strip() == f"built {tag}"
    assert "Step 1/" in result.err  # live progress: the builder's steps as they happen
    assert BUILD_HASH_LABEL in docker_client.images.get(tag).labels
    again = runner(runner_home, "build", "-f", str(project.manifest), "-t", tag, "--json")
    assert again.json() == {"image": tag, "built": False}


def test_setup_build_bakes_commands_as_cached_layers(
        docker_client: docker.DockerClient, runner_home: Path, tmp_path: Path, busybox_image: str,
        built_images: set[str]):
    marker = uuid.uuid4().hex
    setup = [f"echo one-{marker} > /one", "printf 'multi\\nline' > /two", "echo first > /three\necho second >> /three"]
    dockerfile = render_setup_dockerfile(busybox_image, tuple(setup))
    assert dockerfile.count("\nRUN [") == 3 and f"FROM {busybox_image}\n" in dockerfile, dockerfile

    def write(commands: list[str]) -> Path:
        manifest = tmp_path / "setup.yaml"
        body = {"name": f"setup-{marker[:8]}", "resources": {}, "run": [{"command": "cat /one /two"}],
                "image": {"url": busybox_image, "build": {"setup": commands}}}
        manifest.write_text(json.dumps(body))  # JSON is YAML: the commands stay exactly as written
        return manifest

    manifest = write(setup)
    first = runner(runner_home, "build", "-f", str(manifest))
    assert first.code == 0, first.err
    ref = first.out.strip().removeprefix("built ")
    built_images.add(ref)
    # The progress shows each command readably (JSON exec form, not HTML-escaped).
    assert f'Step 2/6 : RUN ["/bin/sh", "-c", "set -e\\necho one-{marker} > /one"]' in first.err, first.err
    assert cat_in(docker_client, ref, "/one", "/two", "/three") == f"one-{marker}\nmulti\nlinefirst\nsecond\n"
    assert runner(runner_home, "build", "-f", str(manifest), "--json").json() == {"image": ref, "built": False}

    longer = runner(runner_home, "build", "-f", str(write([*setup, "echo four > /four"])), "--json")
    assert longer.code == 0, longer.err
    ref2 = longer.json()["image"]
    built_images.add(ref2)
    assert ref2 != ref
    assert cat_in(docker_client, ref2, "/four") == "four\n"
    # The three unchanged setup commands were reused from the builder's cache: same layer images.
    old_layers = [entry["Id"] for entry in docker_client.api.history(ref) if "set -e" in entry["CreatedBy"]]
    new_layers = {entry["Id"] for entry in docker_client.api.history(ref2)}
    assert len(old_layers) == 3 and set(old_layers) <= new_layers, (old_layers, new_layers)


def _store_id(home: Path) -> str:
    with sqlite3.connect(home / "runner.db") as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0])


@pytest.fixture
def store_purged(runner_home: Path, purge_label: Callable[[str], list[str]]) -> Iterator[None]:
    """After the test, anything still labelled with this RUNNER_HOME's store is force-removed."""
    yield
    if (runner_home / "runner.db").exists():
        purge_label(f"ai.runner.store={_store_id(runner_home)}")


def test_create_builds_then_reuses_the_image(
        docker_client: docker.DockerClient, runner_home: Path, project: Project, built_images: set[str],
        store_purged: None, wait_for):
    def finished(run_id: str) -> dict[str, Any]:
        state: dict[str, Any] = {}

        def ended() -> bool:
            state.update(runner(runner_home, "describe", run_id, "--json").json())
            return state["status"] in ("completed", "failed", "terminated")

        wait_for(ended, what=f"run {run_id} to finish", timeout=60)
        return state

    first = runner(runner_home, "create", "-f", str(project.manifest), "--json")
    assert first.code == 0, first.err
    run1 = finished(first.json()["id"])
    assert run1["status"] == "completed", run1
    logs = runner(runner_home, "logs", run1["id"]).out.splitlines()
    assert f"hello {project.marker}" in logs and "hey" in logs, logs
    built = docker_client.images.list(filters={"label": f"{BUILD_HASH_LABEL}"})
    prefix = f"runner-build/build-{project.marker[:8]}:"
    ref = next(tag for image in built for tag in image.tags if tag.startswith(prefix))
    built_images.add(ref)
    first_id = image_id(docker_client, ref)

    second = runner(runner_home, "create", "-f", str(project.manifest))
    assert second.code == 0, second.err
    assert f"image {ref} is up to date" in second.err and "build skipped" in second.err, second.err
    assert "Step 1/" not in second.err
    run2_id = second.out.split()[1]
    run2 = finished(run2_id)
    assert run2["status"] == "completed", run2
    assert image_id(docker_client, ref) == first_id
    # Skipping costs an inspect, building costs containers: the image phase is much shorter the second time.
    assert run2["phases"]["image"] < run1["phases"]["image"], (run1["phases"], run2["phases"])

    store = f"ai.runner.store={_store_id(runner_home)}"
    assert docker_client.containers.list(all=True, filters={"label": store}) == []
    assert docker_client.volumes.list(filters={"label": store}) == []


def test_create_with_another_run_name_reuses_the_built_image(
        docker_client: docker.DockerClient, runner_home: Path, project: Project, built_images: set[str],
        store_purged: None):
    ref = build(runner_home, project, built_images)["image"]
    result = runner(runner_home, "create", "-f", str(project.manifest), "--name", f"other-{project.marker[:8]}")
    for image in docker_client.images.list(filters={"label": project.label}):
        built_images.update(image.tags)
    assert result.code == 0, result.err
    assert f"image {ref} is up to date" in result.err, result.err
