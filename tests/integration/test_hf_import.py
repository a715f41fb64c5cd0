"""`hf://` imports on the real engine, never touching the internet.

(a) A valid hub cache built by the test under RUNNER_HOME/cache/huggingface/hub with
    `HF_HUB_OFFLINE=1`: the run reads the files at the target; its writes never reach the cache.
(b) The download path against a local fake hub (`HF_ENDPOINT=http://127.0.0.1:PORT`) serving the
    endpoints huggingface_hub's `snapshot_download` calls at this version: `GET /api/{models,datasets}/
    REPO/revision/REV` (sha, siblings), `GET /api/{type}s/REPO/tree/COMMIT?recursive=...` (the file
    list; cached on disk as trees/COMMIT.json afterwards) and `HEAD`/`GET [datasets/]REPO/resolve/
    COMMIT/FILE` (X-Repo-Commit, ETag, Content-Length). The first run downloads every file once, the
    second downloads nothing, an offline run with the hub gone still works, a missing repository
    fails the run with a clear reason and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import docker
import pytest
from artifact_support import RunnerCli, make_cli, snapshot_tree, write_manifest

COMMIT = "a" * 40
DS_COMMIT = "b" * 40


@pytest.fixture
def cli(runner_home: Path, docker_client: docker.DockerClient, busybox_image: str,
        tmp_path: Path) -> Iterator[RunnerCli]:
    for harness in make_cli(runner_home, docker_client):
        harness.base_env["HF_HOME"] = str(tmp_path / "hf-home")  # no token or cache of the developer's
        yield harness


def hub_dir(cli: RunnerCli) -> Path:
    return cli.home / "cache" / "huggingface" / "hub"


# --------------------------------------------------------------------------- (a) pre-populated cache


def build_hub_cache(hub: Path, repo_dir: str, commit: str, files: dict[str, bytes]) -> None:
    """What huggingface_hub leaves after a download: refs/main, content-addressed blobs, relative links."""
    repo = hub / repo_dir
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for rel, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / sha).write_bytes(data)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        depth = rel.count("/") + 2
        link.symlink_to("../" * depth + f"blobs/{sha}")


TINY = {
    "config.json": b'{"model_type": "tiny", "hidden_size": 8}\n',
    "model.safetensors": b'\x40\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{"format":"pt"}}' + bytes(range(256)) * 64,
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
}


def test_prepopulated_cache_offline(cli: RunnerCli, tmp_path: Path) -> None:
    hub = hub_dir(cli)
    build_hub_cache(hub, "models--org--tiny", COMMIT, TINY)
    before = snapshot_tree(hub)
    manifest = write_manifest(
        tmp_path / "m.yaml", name="hf-offline", imports={"/models/tiny": "hf://huggingface.co/org/tiny"},
        run=["cat /models/tiny/config.json /models/tiny/tokenizer/vocab.txt",
             "sha256sum /models/tiny/model.safetensors",
             "echo tampered >> /models/tiny/config.json && rm /models/tiny/tokenizer/vocab.txt"
             " && echo new > /models/tiny/new.txt && echo WROTE"],
    )
    run_id, _ = cli.create(manifest, env={"HF_HUB_OFFLINE": "1"})
    described = cli.wait_ended(run_id)
    assert described["status"] == "completed", described
    logs = cli.logs(run_id)
    assert TINY["config.json"].decode() in logs and "hello" in logs and "WROTE" in logs
    assert hashlib.sha256(TINY["model.safetensors"]).hexdigest() in logs
    assert described["imports"] == [{"target": "/models/tiny", "huggingface": "model:org/tiny",
                                     "revision": "main", "commit": COMMIT, "files": 3}]
    # the container's writes stayed in its overlay: cache blobs, links and refs are exactly as built
    assert snapshot_tree(hub) == before
    assert cli.engine_leftovers() == []
    assert not (cli.home / "runs" / run_id / "volumes").exists()


def test_offline_without_cache_fails_clearly(cli: RunnerCli, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", name="hf-offline-missing",
                              imports={"/models/x": "hf://huggingface.co/org/absent"}, run="true")
    done = cli("create", "-f", str(manifest), env={"HF_HUB_OFFLINE": "1"}, ok=1)
    assert "org/absent" in done.stderr and "HF_HUB_OFFLINE" in done.stderr
    [run] = cli.json("list")
    assert run["status"] == "failed" and run["reason"].startswith("import failed"), run
    assert cli.engine_leftovers() == []


# --------------------------------------------------------------------------- (b) a local fake hub


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]


@dataclass
class FakeHub:
    """A minimal Hugging Face Hub: just what snapshot_download needs. Counts requests by kind."""

    repos: dict[tuple[str, str], Repo]
    counts: Counter[str] = field(default_factory=Counter)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def file_gets(self) -> int:
        return self.counts["GET resolve"]

    def start(self) -> None:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                hub.handle(self, head=False)

            def do_HEAD(self) -> None:
                hub.handle(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- routing ------------------------------------------------------------------------------
    def handle(self, request: BaseHTTPRequestHandler, *, head: bool) -> None:
        parts = [unquote(p) for p in urlsplit(request.path).path.strip("/").split("/")]
        if parts[0] == "api" and len(parts) >= 6 and parts[1] in ("models", "datasets"):
            self._api(request, parts[1][:-1], "/".join(parts[2:4]), parts[4], parts[5])
            return
        repo_type = "model"
        if parts[0] == "datasets":
            repo_type, parts = "dataset", parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(request, repo_type, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
            return
        self._send(request, 404, b"", {"X-Error-Code": "EntryNotFound"})

    def _api(self, request: BaseHTTPRequestHandler, repo_type: str, repo_id: str, what: str, rev: str) -> None:
        repo = self.repos.get((repo_type, repo_id))
        self.counts[f"api {what}"] += 1
        if repo is None:
            self._send(request, 404, b'{"error":"Repository not found"}',
                       {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            return
        if what == "revision":
            body: Any = {"id": repo_id, "sha": repo.commit, "siblings": [{"rfilename": f} for f in repo.files]}
        elif what == "tree":
            body = [self._tree_entry(path, data) for path, data in repo.files.items()]
        else:
            self._send(request, 404, b"", {})
            return
        self._send(request, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    @staticmethod
    def _tree_entry(path: str, data: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data), "oid": _git_oid(data)}
        if path.endswith(".safetensors"):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _resolve(self, request: BaseHTTPRequestHandler, repo_type: str, repo_id: str, rev: str, path: str,
                 head: bool) -> None:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            self._send(request, 404, b"", {"X-Error-Code": "RepoNotFound"})
            return
        data = repo.files.get(path)
        if data is None or rev not in (repo.commit, "main"):
            self._send(request, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit})
            return
        self.counts["HEAD resolve" if head else "GET resolve"] += 1
        etag = hashlib.sha256(data).hexdigest() if path.endswith(".safetensors") else _git_oid(data)
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
        self._send(request, 200, b"" if head else data, headers, length=len(data))

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str],
              length: int | None = None) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body) if length is None else length))
        request.end_headers()
        if body:
            request.wfile.write(body)


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()  # git's object id (sha1 by design)


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub({
        ("model", "org/tiny"): Repo(COMMIT, dict(TINY)),
        ("dataset", "org/ds"): Repo(DS_COMMIT, {"data/train.jsonl": b'{"text": "a"}\n{"text": "b"}\n',
                                                "README.md": b"# ds\n"}),
    })
    hub.start()
    yield hub
    hub.stop()


def _hf_run(cli: RunnerCli, tmp_path: Path, name: str, uri: str, target: str, listing: str,
            env: dict[str, str]) -> tuple[dict[str, Any], str, str]:
    manifest = write_manifest(tmp_path / f"{name}.yaml", name=name, imports={target: uri},
                              run=[f"cat {listing}", f"echo mine > {target}/scratch.txt"])
    created = cli("create", "-f", str(manifest), env=env)  # not --json: phases and progress are printed
    run_id, stderr = created.stdout.split()[1], created.stderr
    described = cli.wait_ended(run_id)
    return described, cli.logs(run_id), stderr


def test_download_once_then_from_cache(cli: RunnerCli, tmp_path: Path, fake_hub: FakeHub) -> None:
    online = {"HF_ENDPOINT": fake_hub.url}
    listing = "/models/tiny/config.json /models/tiny/tokenizer/vocab.txt"
    first, logs, stderr = _hf_run(cli, tmp_path, "hf-first", "hf://huggingface.co/org/tiny", "/models/tiny",
                                  listing, online)
    assert first["status"] == "completed", first
    assert TINY["config.json"].decode() in logs and "hello" in logs
    assert fake_hub.file_gets() == len(TINY)  # every file fetched exactly once
    assert "imports:" in stderr  # download progress was reported
    repo = hub_dir(cli) / "models--org--tiny"
    assert (repo / "refs" / "main").read_text() == COMMIT
    for rel, data in TINY.items():
        link = repo / "snapshots" / COMMIT / rel
        assert link.is_symlink() and link.read_bytes() == data
    cache_after_first = snapshot_tree(hub_dir(cli) / "models--org--tiny")

    second, logs2, _ = _hf_run(cli, tmp_path, "hf-second", "hf://huggingface.co/org/tiny", "/models/tiny",
                               listing, online)
    assert second["status"] == "completed", second
    assert TINY["config.json"].decode() in logs2
    assert fake_hub.file_gets() == len(TINY)  # the second run downloaded nothing
    assert second["imports"][0]["commit"] == COMMIT

    fake_hub.stop()  # the hub is gone; offline mode still serves the cached snapshot
    third, logs3, _ = _hf_run(cli, tmp_path, "hf-third", "hf://huggingface.co/org/tiny", "/models/tiny",
                              listing, {**online, "HF_HUB_OFFLINE": "1"})
    assert third["status"] == "completed", third
    assert "hello" in logs3
    assert snapshot_tree(hub_dir(cli) / "models--org--tiny") == cache_after_first  # run writes never reach it
    assert cli.engine_leftovers() == []


def test_dataset_download(cli: RunnerCli, tmp_path: Path, fake_hub: FakeHub) -> None:
    described, logs, _ = _hf_run(cli, tmp_path, "hf-dataset", "hf://huggingface.co/datasets/org/ds", "/data",
                                 "/data/data/train.jsonl /data/README.md", {"HF_ENDPOINT": fake_hub.url})
    assert described["status"] == "completed", described
    assert '{"text": "b"}' in logs and "# ds" in logs
    assert described["imports"][0]["huggingface"] == "dataset:org/ds"
    assert described["imports"][0]["commit"] == DS_COMMIT
    assert fake_hub.file_gets() == 2
    assert (hub_dir(cli) / "datasets--org--ds" / "snapshots" / DS_COMMIT / "data" / "train.jsonl").is_symlink()
    assert cli.engine_leftovers() == []


def test_missing_repository_fails_the_run(cli: RunnerCli, tmp_path: Path, fake_hub: FakeHub) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", name="hf-missing",
                              imports={"/models/x": "hf://huggingface.co/org/does-not-exist"}, run="true")
    done = cli("create", "-f", str(manifest), env={"HF_ENDPOINT": fake_hub.url}, ok=1)
    assert "org/does-not-exist" in done.stderr
    assert "Traceback" not in done.stderr
    [run] = cli.json("list")
    assert run["status"] == "failed", run
    assert run["reason"].startswith("import failed") and "org/does-not-exist" in run["reason"], run
    assert fake_hub.file_gets() == 0
    assert cli.engine_leftovers() == []
    assert not (hub_dir(cli) / "models--org--does-not-exist" / "snapshots").exists()


def test_unreachable_hub_without_cache_says_so(cli: RunnerCli, tmp_path: Path, fake_hub: FakeHub) -> None:
    url = fake_hub.url
    fake_hub.stop()  # connection refused, downloads NOT switched off
    manifest = write_manifest(tmp_path / "m.yaml", name="hf-unreachable",
                              imports={"/models/tiny": "hf://huggingface.co/org/tiny"}, run="true")
    done = cli("create", "-f", str(manifest), env={"HF_ENDPOINT": url}, ok=1)
    [run] = cli.json("list")
    assert run["status"] == "failed" and run["reason"].startswith("import failed"), run
    assert "downloads are off" not in run["reason"], run["reason"]  # they are not: the hub is unreachable
    assert "org/tiny" in done.stderr
    assert cli.engine_leftovers() == []


def test_cache_link_escaping_its_repository_is_refused(cli: RunnerCli, tmp_path: Path) -> None:
    hub = hub_dir(cli)
    build_hub_cache(hub, "models--org--tiny", COMMIT, TINY)
    outside = tmp_path / "outside-secret"
    outside.write_text("host secret\n")
    (hub / "models--org--tiny" / "snapshots" / COMMIT / "evil").symlink_to(outside)
    manifest = write_manifest(tmp_path / "m.yaml", name="hf-evil-cache",
                              imports={"/models/tiny": "hf://huggingface.co/org/tiny"}, run="cat /models/tiny/evil")
    done = cli("create", "-f", str(manifest), env={"HF_HUB_OFFLINE": "1"}, ok=1)
    assert "outside its repository cache" in done.stderr
    [run] = cli.json("list")
    assert run["status"] == "failed" and run["reason"].startswith("import failed"), run
    assert cli.engine_leftovers() == []


def test_hf_import_cannot_also_be_exported(cli: RunnerCli, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", name="hf-export",
                              imports={"/models/tiny": "hf://huggingface.co/org/tiny"},
                              exports={"/models/tiny": "artifact://tiny-copy"}, run="true")
    refused = cli("create", "-f", str(manifest), ok=2)
    assert "cannot also be exported" in refused.stderr
    assert cli.json("list") == []
    assert cli.engine_leftovers() == []
