"""S8 at the run level — a git import authenticated with a token from the secret store.

Pass criterion (reliability.md S8): the token is absent from every git process's argv (a recording
`git` wrapper first on PATH, the run-level twin of /proc/<pid>/cmdline), the clone's .git/config inside
the container, runner's output and logs, and every file under RUNNER_HOME except secrets/ — the run
store (SQLite + WAL), run directories and the git mirror cache included — in every encoding (raw,
URL-encoded, base64 at any alignment, which covers the Basic header `x-access-token:<token>`).

tests/integration/test_git_import.py holds the library-level proofs (S6 hostile URLs/refs with zero git
invocations, S7 no prompts, S8 env-only token, scrubbed errors, clean .git/config); this adds the path
through `runner create` and the run store.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oracle import check_consistency
from runkit import RunKit
from support import BUSYBOX, assert_clean_output, forms, home_files, run

REAL_GIT = shutil.which("git") or "/usr/bin/git"
WRAPPER = """#!{python} -IS
import json, os, sys
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "has_header": "GIT_CONFIG_VALUE_0" in os.environ}}) + "\\n")
os.execv({git!r}, [{git!r}, *sys.argv[1:]])
"""


class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    """git's dumb HTTP protocol over a bare repo, behind Basic auth."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        server: Any = self.server
        server.seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != f"Basic {server.basic}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


def _git(*args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run([REAL_GIT, *args], env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def private_remote(tmp_path: Path) -> Iterator[tuple[str, str, Any]]:
    """(url, token, server): a private repo served on loopback, readable only with the token."""
    token = f"RNRCANARY{secrets.token_hex(12)}+/="
    work = tmp_path / "origin"
    work.mkdir()
    _git("init", "-q", "-b", "trunk", str(work))
    (work / "README").write_text("private code\n")
    _git("-C", str(work), "add", "README")
    _git("-C", str(work), "commit", "-q", "-m", "first")
    root = tmp_path / "srv"
    root.mkdir()
    _git("clone", "-q", "--bare", str(work), str(root / "repo.git"))
    _git("-C", str(root / "repo.git"), "update-server-info")
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                  functools.partial(_AuthHandler, directory=str(root)))
    server.daemon_threads = True
    server.basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo.git", token, server
    server.shutdown()
    server.server_close()


def test_git_token_from_the_secret_store_is_stored_nowhere(kit: RunKit, tmp_path: Path, private_remote, figures):
    url, token, server = private_remote
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "git-calls.jsonl"
    (bin_dir / "git").write_text(WRAPPER.format(python=sys.executable, log=str(log), git=REAL_GIT))
    (bin_dir / "git").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}

    assert kit.cli("secret", "set", "GIT_CANARY", stdin=token + "\n").code == 0
    manifest = kit.manifest(f"""
        name: s8-private
        resources: {{preset: cpu-small}}
        image: {BUSYBOX}
        import:
          /code:
            git: {{url: "{url}", ref: trunk, credential_name: GIT_CANARY}}
        termination_protection: true
        run:
          - command: cat /code/README
    """, "s8.yaml")
    created = run(kit, "create", "-f", manifest, "--allow-local-sources", "--json", env=env)
    assert created.code == 0, created.text
    run_id = json.loads(created.out)["id"]
    assert any(header == f"Basic {server.basic}" for header in server.seen), "the token was never used"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls and any(call["has_header"] for call in calls), "runner's git did not go through the wrapper"

    container = kit.container(run_id)
    stream, _ = container.get_archive("/code/.git/config")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        git_config = tar.extractfile(tar.getmembers()[0]).read().decode()  # type: ignore[union-attr]
    assert url in git_config  # the clean URL is there, so the search below is meaningful
    inspected = json.dumps(kit.inspect(run_id))
    outputs = [created, run(kit, "logs", run_id), run(kit, "describe", run_id, "--json"), run(kit, "list", "--json"),
               run(kit, "terminate", run_id), run(kit, "logs", run_id)]
    assert all(o.code == 0 for o in outputs), [o.text[-300:] for o in outputs if o.code]
    assert "private code" in outputs[-1].out
    assert_clean_output(*outputs)
    files = {str(p.relative_to(kit.home)): p.read_bytes() for p in home_files(kit.home)}
    assert any(name.startswith("cache/git") for name in files), "the mirror cache should be searched too"
    argv = json.dumps([call["argv"] for call in calls])
    leaks = []
    for form in forms(token):
        leaks += [f"{form} in {what}" for what, text in (("git argv", argv), (".git/config", git_config),
                                                         ("docker inspect", inspected)) if form in text]
        leaks += [f"{form} in output {i}" for i, o in enumerate(outputs) if form in o.text]
        leaks += [f"{form} in {name}" for name, data in files.items() if form.encode() in data]
    figures.add("S8", git_calls=len(calls), leaks_found=len(leaks))
    assert leaks == []
    assert check_consistency(kit, grace_s=0) == []
    kit.assert_clean()
