"""Git imports against real repositories and real git (no Docker): refs, the mirror cache,
hardening of every git process (S6), credentials (S8), auth failures without prompts (S7),
timeouts and concurrency.

Every git process the importer starts goes through a recording wrapper (passed as `git=` and
placed first on PATH) that appends its argv and the hardening-relevant environment to a JSON
log and then execs the real git, so tests assert on what actually ran.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode, ImportFailedError, PolicyError
from runner.manifest.giturl import GitUrl, parse_git_url
from runner.sources.git import GitCheckout, GitCredential, GitImportRequest, GitMirrorCache

REAL_GIT = shutil.which("git") or "/usr/bin/git"
CANARY = "RNRCANARYghp7f3kQ9zX2mLw8vB4nT6yH1cJ5"
CANARY_BASIC = base64.b64encode(f"x-access-token:{CANARY}".encode()).decode()

WRAPPER = """#!{python} -IS
import json, os, shlex, sys
KEYS = ("GIT_TERMINAL_PROMPT", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_PROTOCOL_FROM_USER",
        "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0",
        "GIT_CONFIG_PARAMETERS", "GIT_DIR", "HOME")
env = {{k: os.environ.get(k) for k in KEYS}}
words = shlex.split(os.environ.get("GIT_SSH_COMMAND", ""))
key = words[words.index("-i") + 1] if "-i" in words else None
record = {{
    "argv": sys.argv[1:],
    "env": env,
    "auth_header": os.environ.get("GIT_CONFIG_VALUE_0", "").startswith("Authorization: Basic "),
    "stdin": os.readlink("/proc/self/fd/0"),
    "pid": os.getpid(),
    "key_mode": oct(os.stat(key).st_mode & 0o777) if key and os.path.exists(key) else None,
}}
fd = os.open({log!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
os.write(fd, (json.dumps(record) + "\\n").encode())
os.close(fd)
os.execv({git!r}, [{git!r}, *sys.argv[1:]])
"""


# --------------------------------------------------------------------------- helpers


def git(*args: str, cwd: Path | None = None) -> str:
    """The test's own git, isolated from the machine's configuration."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        [REAL_GIT, "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def bulk_commits(repo: Path, count: int, branch: str = "trunk") -> str:
    """`count` commits on top of `branch` in one `git fast-import` (subprocess per commit is slow)."""
    parent = git("-C", str(repo), "rev-parse", branch)
    chunks = []
    for i in range(count):
        message, body = f"bulk {i}".encode(), f"content {i}\n".encode() * 20
        chunks.append(
            f"commit refs/heads/{branch}\ncommitter t <t@example.com> {1_700_000_000 + i} +0000\n".encode()
            + b"data %d\n%s\n" % (len(message), message)
            + (f"from {parent}\n".encode() if i == 0 else b"")
            + f"M 644 inline bulk/f{i % 50}.txt\n".encode()
            + b"data %d\n%s\n" % (len(body), body)
        )
    subprocess.run([REAL_GIT, "-C", str(repo), "fast-import", "--quiet"], input=b"".join(chunks), check=True)
    git("-C", str(repo), "reset", "-q", "--hard")
    return git("-C", str(repo), "rev-parse", branch)


def commit(repo: Path, name: str, content: str) -> str:
    (repo / name).write_text(content)
    git("-C", str(repo), "add", name)
    git("-C", str(repo), "commit", "-q", "-m", f"{name}: {content}")
    return git("-C", str(repo), "rev-parse", "HEAD")


@dataclass
class Origin:
    path: Path
    shas: dict[str, str]

    @property
    def url(self) -> GitUrl:
        return parse_git_url(f"file://{self.path}")


@dataclass(frozen=True)
class Call:
    argv: list[str]
    env: dict[str, str | None]
    auth_header: bool
    stdin: str
    pid: int
    key_mode: str | None

    @property
    def command(self) -> str:
        """The git subcommand, after the -c pairs and an optional -C DIR."""
        args = list(self.argv)
        while args and args[0] in ("-c", "-C"):
            args = args[2:]
        return args[0] if args else ""

    def configs(self) -> list[str]:
        return [self.argv[i + 1] for i, arg in enumerate(self.argv[:-1]) if arg == "-c"]


@dataclass
class Recorder:
    script: Path
    log: Path

    def calls(self) -> list[Call]:
        if not self.log.exists():
            return []
        return [Call(**json.loads(line)) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[str]:
        return [call.command for call in self.calls()]

    def reset(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "git-calls.jsonl"
    script = bindir / "git"
    script.write_text(WRAPPER.format(python=sys.executable, log=str(log), git=REAL_GIT))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")  # S6: first on PATH too
    return Recorder(script, log)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    """trunk (default, not master/main): c1 ← c2 ← c3; feature: c1 ← f1; v1 (light) = c1, v2 (annotated) = c2."""
    repo = tmp_path / "origin"
    git("init", "-q", "-b", "trunk", str(repo))
    shas = {"c1": commit(repo, "a.txt", "one")}
    git("-C", str(repo), "tag", "v1")
    git("-C", str(repo), "checkout", "-q", "-b", "feature")
    shas["f1"] = commit(repo, "a.txt", "feature")
    git("-C", str(repo), "checkout", "-q", "trunk")
    shas["c2"] = commit(repo, "a.txt", "two")
    git("-C", str(repo), "tag", "-a", "-m", "release two", "v2")
    shas["c3"] = commit(repo, "a.txt", "three")
    return Origin(repo, shas)


@pytest.fixture
def cache(tmp_path: Path, recorder: Recorder) -> GitMirrorCache:
    return GitMirrorCache(tmp_path / "home" / "cache" / "git", git=str(recorder.script))


def request(url: GitUrl | str, ref: str | None = None, **kwargs: Any) -> GitImportRequest:
    parsed = parse_git_url(url) if isinstance(url, str) else url
    kwargs.setdefault("allow_local", True)
    return GitImportRequest(url=parsed, ref=ref, **kwargs)


def head_of(repo: Path) -> str:
    return git("-C", str(repo), "rev-parse", "HEAD")


def files_containing(root: Path, needles: list[str]) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                hits.append(path)
    return hits


# --------------------------------------------------------------------------- a loopback git HTTP server


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves bare repositories over git's dumb HTTP protocol, with switchable misbehaviour."""

    server: GitHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Authorization")))
        if srv.mode == "hang":
            srv.release.wait(60)
            return
        wanted = f"Basic {srv.basic}" if srv.basic else None
        if srv.mode == "deny" or (wanted and self.headers.get("Authorization") != wanted):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if srv.mode == "leak" and self._leak():
            return
        super().do_GET()

    def _leak(self) -> bool:
        """Redirect into a URL that carries the token, then fail, so git prints the token."""
        prefix = f"/{CANARY}/{CANARY_BASIC}"
        if not self.path.startswith(prefix):
            self.send_response(302)
            self.send_header("Location", prefix + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if "/objects/" in self.path:
            self.send_error(500)
            return True
        self.path = self.path[len(prefix) :]
        return False


class GitHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.mode = "serve"
        self.basic: str | None = None
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()

    def url(self, name: str = "repo.git") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@pytest.fixture
def http_remote(tmp_path: Path, origin: Origin) -> Iterator[GitHttpServer]:
    root = tmp_path / "srv"
    root.mkdir()
    git("clone", "-q", "--bare", str(origin.path), str(root / "repo.git"))
    git("-C", str(root / "repo.git"), "update-server-info")
    server = GitHttpServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- refs


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("trunk", "c3"),
        ("feature", "f1"),
        ("v1", "c1"),
        ("v2", "c2"),  # annotated: peeled to its commit
        ("refs/heads/feature", "f1"),
        ("FULL:c2", "c2"),
        ("ABBREV:f1", "f1"),
        (None, "c3"),  # default branch is trunk: the remote's HEAD is followed, not "master"
    ],
)
def test_checkout_at_ref(cache: GitMirrorCache, origin: Origin, tmp_path: Path, ref: str | None, expected: str) -> None:
    if ref and ref.startswith("FULL:"):
        ref = origin.shas[ref[5:]]
    elif ref and ref.startswith("ABBREV:"):
        ref = origin.shas[ref[7:]][:7]
    dest = tmp_path / "code"
    result = cache.checkout(request(origin.url, ref), dest)
    assert result == GitCheckout(path=dest, commit=origin.shas[expected], ref=ref, warm=False)
    assert head_of(dest) == origin.shas[expected]
    with pytest.raises(subprocess.CalledProcessError):
        git("-C", str(dest), "symbolic-ref", "-q", "HEAD")  # detached
    assert git("-C", str(dest), "status", "--porcelain") == ""


def test_default_branch_change_is_followed_on_a_warm_mirror(
    cache: GitMirrorCache, origin: Origin, tmp_path: Path
) -> None:
    assert cache.checkout(request(origin.url), tmp_path / "one").commit == origin.shas["c3"]
    git("-C", str(origin.path), "symbolic-ref", "HEAD", "refs/heads/feature")
    again = cache.checkout(request(origin.url), tmp_path / "two")
    assert (again.warm, again.commit) == (True, origin.shas["f1"])


def test_missing_ref_names_it_and_suggests_close_names(cache: GitMirrorCache, origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "code"
    with pytest.raises(ImportFailedError) as info:
        cache.checkout(request(origin.url, "featur"), dest)
    assert "'featur'" in info.value.message
    assert info.value.hint == "close matches: feature"
    assert info.value.exit_code == ExitCode.RUN_FAILED
    assert not dest.exists()


def test_missing_sha_lists_branches_and_tags(cache: GitMirrorCache, origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(ImportFailedError) as info:
        cache.checkout(request(origin.url, "0" * 40), tmp_path / "code")
    assert f"'{'0' * 40}'" in info.value.message
    assert info.value.hint == "some branches and tags: feature, trunk, v1, v2"


def test_empty_repository_has_no_default_branch(cache: GitMirrorCache, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    git("init", "-q", str(empty))
    with pytest.raises(ImportFailedError, match="no default branch"):
        cache.checkout(request(f"file://{empty}"), tmp_path / "code")


# --------------------------------------------------------------------------- the mirror cache


def test_second_import_is_warm_and_only_fetches(
    cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    first = cache.checkout(request(origin.url, "trunk"), tmp_path / "one")
    assert first.warm is False
    assert recorder.commands().count("init") == 1
    mirror = cache.mirror_path(origin.url)
    inode = mirror.stat().st_ino
    recorder.reset()

    second = cache.checkout(request(origin.url, "trunk"), tmp_path / "two")
    assert second.warm is True and second.commit == first.commit
    calls = recorder.calls()
    assert "init" not in recorder.commands()
    assert [c.command for c in calls if origin.url.url in c.argv] == ["fetch", "remote"]  # remote set-url
    clones = [c for c in calls if c.command == "clone"]
    assert len(clones) == 1 and "--local" in clones[0].argv and str(mirror) in clones[0].argv
    assert mirror.stat().st_ino == inode  # the same mirror, not a fresh clone


def test_warm_fetch_sees_new_commits_and_prunes_deleted_branches(
    cache: GitMirrorCache, origin: Origin, tmp_path: Path
) -> None:
    cache.checkout(request(origin.url, "feature"), tmp_path / "one")
    c4 = commit(origin.path, "b.txt", "four")
    git("-C", str(origin.path), "branch", "-D", "feature")
    assert cache.checkout(request(origin.url, "trunk"), tmp_path / "two").commit == c4
    with pytest.raises(ImportFailedError, match="'feature'"):
        cache.checkout(request(origin.url, "feature"), tmp_path / "three")


def test_cached_sha_needs_no_remote_at_all(
    cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    cache.checkout(request(origin.url, "trunk"), tmp_path / "one")
    shutil.rmtree(origin.path)  # any network step would now fail
    recorder.reset()
    for i, ref in enumerate([origin.shas["c2"], origin.shas["f1"][:10]]):
        result = cache.checkout(request(origin.url, ref), tmp_path / f"sha{i}")
        assert result.warm and result.commit in (origin.shas["c2"], origin.shas["f1"])
    assert not {"fetch", "ls-remote"} & set(recorder.commands())


def test_checkout_is_self_contained(cache: GitMirrorCache, origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "code"
    cache.checkout(request(origin.url, "trunk"), dest)
    assert not (dest / ".git" / "objects" / "info" / "alternates").exists()
    moved = tmp_path / "moved-cache"
    cache.mirror_path(origin.url).rename(moved)
    shutil.rmtree(moved)
    log = git("-C", str(dest), "log", "--format=%H", "HEAD")
    assert log.splitlines() == [origin.shas["c3"], origin.shas["c2"], origin.shas["c1"]]
    git("-C", str(dest), "fsck", "--full", "--no-dangling")


def test_checkout_config_holds_only_the_clean_url(cache: GitMirrorCache, origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "code"
    cache.checkout(request(origin.url, "trunk"), dest)
    assert git("-C", str(dest), "config", "remote.origin.url") == origin.url.display
    config = (dest / ".git" / "config").read_text()
    assert str(cache.mirror_path(origin.url)) not in config


def test_cache_is_private(cache: GitMirrorCache, origin: Origin, tmp_path: Path) -> None:
    cache.checkout(request(origin.url), tmp_path / "code")
    mirror = cache.mirror_path(origin.url)
    for directory in (tmp_path / "home", tmp_path / "home" / "cache", mirror.parent, mirror):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(mirror.with_suffix(".lock").stat().st_mode) == 0o600
    assert sorted(p.name for p in mirror.parent.iterdir()) == sorted([mirror.name, mirror.with_suffix(".lock").name])


def test_interrupted_cold_clone_leaves_no_mirror(
    cache: GitMirrorCache, tmp_path: Path, http_remote: GitHttpServer
) -> None:
    http_remote.mode = "hang"
    url = parse_git_url(http_remote.url())
    with pytest.raises(ImportFailedError):
        cache.checkout(request(url, timeout_s=1.5), tmp_path / "code")
    assert not cache.mirror_path(url).exists()
    assert not list(cache.mirror_path(url).parent.glob("*.tmp-*"))


def test_dest_must_be_absent_or_empty(
    cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ImportFailedError, match="not an empty directory"):
        cache.checkout(request(origin.url), busy)
    assert recorder.calls() == []
    assert (busy / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cache.checkout(request(origin.url), empty).commit == origin.shas["c3"]


def test_failure_after_the_copy_empties_a_dest_it_did_not_create(
    cache: GitMirrorCache, with_submodule: Origin, tmp_path: Path
) -> None:
    shutil.rmtree(tmp_path / "lib")  # the submodule update (after clone and checkout) now fails
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImportFailedError, match="updating submodules failed"):
        cache.checkout(request(with_submodule.url, "trunk", submodules=True), empty)
    assert empty.is_dir() and list(empty.iterdir()) == []


# --------------------------------------------------------------------------- S6: policy and hardening


@pytest.mark.parametrize("raw", ["file:///srv/repo", "/srv/repo", "http://127.0.0.1:9/r.git", "https://localhost:1/r"])
@pytest.mark.parametrize("via_path", [False, True])
def test_local_sources_refused_with_zero_git_invocations(
    raw: str, via_path: bool, recorder: Recorder, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    cache = GitMirrorCache(cache_dir, git="git" if via_path else str(recorder.script))
    with pytest.raises(PolicyError) as info:
        cache.checkout(request(raw, allow_local=False), tmp_path / "code")
    assert info.value.exit_code == ExitCode.POLICY
    assert recorder.calls() == []
    assert not cache_dir.exists() and not (tmp_path / "code").exists()


def test_recorder_sees_path_invocations(recorder: Recorder, origin: Origin, tmp_path: Path) -> None:
    """Control for the test above: `git` on PATH really is the recorder."""
    GitMirrorCache(tmp_path / "cache", git="git").checkout(request(origin.url), tmp_path / "code")
    assert "fetch" in recorder.commands()


HOSTILE = [
    GitUrl("ext::sh -c touch% /tmp/pwned", "https", "x", "/", "x", is_local=False),
    GitUrl("-oProxyCommand=touch /tmp/pwned", "ssh", "x", "/", "x", is_local=False),
    GitUrl(f"https://user:{CANARY}@github.com/o/r", "https", "github.com", "/o/r", "x", is_local=False),
    GitUrl("file:///srv/repo", "https", "github.com", "/o/r", "https://github.com/o/r", is_local=False),  # lies
]


@pytest.mark.parametrize("url", HOSTILE, ids=lambda u: u.url[:30])
def test_hand_built_hostile_url_refused_before_git(
    url: GitUrl, cache: GitMirrorCache, recorder: Recorder, tmp_path: Path
) -> None:
    with pytest.raises(PolicyError) as info:
        cache.checkout(GitImportRequest(url=url, ref=None), tmp_path / "code")
    assert CANARY not in str(info.value)
    assert recorder.calls() == []


@pytest.mark.parametrize("ref", ["--upload-pack=touch /tmp/pwned", "-b", "main..x", "a b", "x\n", "HEAD@{1}", ""])
def test_hostile_ref_refused_before_git(
    ref: str, cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    with pytest.raises(PolicyError):
        cache.checkout(request(origin.url, ref), tmp_path / "code")
    assert recorder.calls() == []


def _assert_hardened(call: Call) -> None:
    env = call.env
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_PROTOCOL_FROM_USER"] == "0"
    assert env["GIT_ASKPASS"] == "" and env["SSH_ASKPASS"] == ""
    assert env["GIT_DIR"] is None
    assert "BatchMode=yes" in (env["GIT_SSH_COMMAND"] or "")
    assert "StrictHostKeyChecking=accept-new" in (env["GIT_SSH_COMMAND"] or "")
    assert Path(env["HOME"] or "/").name.startswith("runner-git-")
    assert call.stdin == "/dev/null"
    configs = call.configs()
    assert configs[0] == "protocol.allow=never"
    for setting in ("core.hooksPath=/dev/null", "submodule.recurse=false", "credential.helper="):
        assert setting in configs


def test_every_invocation_is_hardened(
    cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    cache.checkout(request(origin.url), tmp_path / "cold")
    cache.checkout(request(origin.url, "v2"), tmp_path / "warm")
    calls = recorder.calls()
    assert {"init", "fetch", "ls-remote", "rev-parse", "clone", "checkout", "remote"} <= {c.command for c in calls}
    for call in calls:
        _assert_hardened(call)
        if call.command in ("fetch", "ls-remote", "clone"):
            assert "--no-recurse-submodules" in call.argv or call.command == "ls-remote"
            url_at = call.argv.index("--") + 1  # every URL or path comes after `--`
            assert call.argv[url_at] in (origin.url.url, str(cache.mirror_path(origin.url)))


def test_file_and_http_are_not_allowed_for_a_remote_import(
    cache: GitMirrorCache, recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy nobody listens on: the https request fails at once, without leaving the machine.
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(ImportFailedError) as info:
        cache.checkout(request("https://github.com/o/r.git", allow_local=False, timeout_s=30), tmp_path / "code")
    assert "fetching failed" in info.value.message
    calls = recorder.calls()
    assert [c.command for c in calls] == ["init", "fetch"]
    for call in calls:
        _assert_hardened(call)
        assert "protocol.file.allow=always" not in call.configs()
        assert "protocol.http.allow=always" not in call.configs()
        assert {"protocol.https.allow=always", "protocol.ssh.allow=always"} <= set(call.configs())


def test_caller_environment_cannot_steer_git(
    cache: GitMirrorCache, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = tmp_path / "evil-hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for name in ("post-checkout", "reference-transaction"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / name).chmod(0o755)
    evil_config = tmp_path / "evil.gitconfig"
    evil_config.write_text(f"[core]\n\thooksPath = {hooks}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(evil_config))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.hookspath'='{hooks}'")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "nowhere"))

    # Control: with this environment, plain git runs the hook.
    subprocess.run(
        [REAL_GIT, "clone", "-q", str(origin.path), str(tmp_path / "control")], check=True, capture_output=True
    )
    assert marker.exists()
    marker.unlink()

    result = cache.checkout(request(origin.url), tmp_path / "code")
    assert result.commit == origin.shas["c3"]
    assert not marker.exists()


# --------------------------------------------------------------------------- S8: credentials


def test_token_goes_through_the_environment_only(cache: GitMirrorCache, recorder: Recorder, tmp_path: Path) -> None:
    url = parse_git_url("https://127.0.0.1:1/o/r.git")  # nothing listens: fails fast
    req = request(url, "trunk", credential=GitCredential(token=CANARY), timeout_s=30)
    with pytest.raises(ImportFailedError) as info:
        cache.checkout(req, tmp_path / "code")
    calls = recorder.calls()
    assert calls
    for call in calls:
        assert not any(CANARY in arg or CANARY_BASIC in arg for arg in call.argv)
        assert call.env["GIT_CONFIG_COUNT"] == "1"
        assert call.env["GIT_CONFIG_KEY_0"] == "http.https://127.0.0.1:1/.extraHeader"
        assert call.auth_header
    assert CANARY not in recorder.log.read_text()
    assert CANARY not in str(info.value) and CANARY not in repr(req)
    assert files_containing(tmp_path / "home", [CANARY, CANARY_BASIC]) == []


def test_token_authenticates_and_is_stored_nowhere(
    cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path, http_remote: GitHttpServer
) -> None:
    http_remote.basic = CANARY_BASIC
    dest = tmp_path / "code"
    result = cache.checkout(request(http_remote.url(), "trunk", credential=GitCredential(token=CANARY)), dest)
    assert result.commit == origin.shas["c3"]
    assert http_remote.requests and all(auth == f"Basic {CANARY_BASIC}" for _, auth in http_remote.requests)
    assert git("-C", str(dest), "config", "remote.origin.url") == http_remote.url()
    assert files_containing(dest, [CANARY, CANARY_BASIC]) == []
    assert files_containing(tmp_path / "home", [CANARY, CANARY_BASIC]) == []
    assert CANARY not in recorder.log.read_text() and CANARY_BASIC not in recorder.log.read_text()


def test_token_is_scrubbed_from_git_errors(cache: GitMirrorCache, tmp_path: Path, http_remote: GitHttpServer) -> None:
    http_remote.mode = "leak"  # git prints the redirect target, which carries the token
    with pytest.raises(ImportFailedError) as info:
        cache.checkout(request(http_remote.url(), credential=GitCredential(token=CANARY)), tmp_path / "code")
    text = str(info.value)
    assert "/***/***/repo.git" in text  # git did print the token and its base64 form, masked
    assert CANARY not in text and CANARY_BASIC not in text


def test_ssh_key_is_a_private_temporary_file(cache: GitMirrorCache, recorder: Recorder, tmp_path: Path) -> None:
    key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n-----END OPENSSH PRIVATE KEY-----"
    req = request("ssh://git@127.0.0.1:1/o/r.git", credential=GitCredential(ssh_private_key=key), timeout_s=30)
    with pytest.raises(ImportFailedError) as info:
        cache.checkout(req, tmp_path / "code")
    calls = recorder.calls()
    assert calls and all(call.key_mode == "0o600" for call in calls)
    ssh = (calls[0].env["GIT_SSH_COMMAND"] or "").split()
    assert "IdentitiesOnly=yes" in ssh
    key_path = Path(ssh[ssh.index("-i") + 1])
    assert not key_path.exists() and not key_path.parent.exists()
    assert CANARY not in recorder.log.read_text() and CANARY not in str(info.value)


def test_scrub_masks_every_form_of_the_token_and_url_userinfo() -> None:
    from runner.sources.git import _scrub, _secret_forms  # the one private seam tested directly

    token = CANARY + "/+="
    spellings = [
        token,
        "RNRCANARYghp7f3kQ9zX2mLw8vB4nT6yH1cJ5%2F%2B%3D",  # URL-encoded
        base64.b64encode(token.encode()).decode(),
        base64.b64encode(f"x-access-token:{token}".encode()).decode(),  # the Basic header value
    ]
    text = " ".join(f"<{s}>" for s in spellings) + " https://user:pw@host/x ssh://git@host/y"
    scrubbed = _scrub(text, _secret_forms(token))
    assert scrubbed == "<***> <***> <***> <***> https://***@host/x ssh://***@host/y"


def test_credentials_stay_out_of_repr() -> None:
    cred = GitCredential(token=CANARY, ssh_private_key=CANARY)
    assert CANARY not in repr(cred)
    assert CANARY not in repr(request("https://github.com/o/r", credential=cred))


# --------------------------------------------------------------------------- S7: no prompts, no hangs


def test_auth_required_fails_fast_without_prompting(
    cache: GitMirrorCache, recorder: Recorder, tmp_path: Path, http_remote: GitHttpServer
) -> None:
    http_remote.mode = "deny"
    started = time.monotonic()
    with pytest.raises(ImportFailedError) as info:
        cache.checkout(request(http_remote.url(), timeout_s=25), tmp_path / "code")
    elapsed = time.monotonic() - started
    assert elapsed < 30
    assert "terminal prompts disabled" in info.value.message  # an auth failure, not our timeout
    assert info.value.hint is not None and "runner secret set" in info.value.hint
    assert all(call.stdin == "/dev/null" for call in recorder.calls())
    assert not (tmp_path / "code").exists()


def _processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_hung_remote_is_killed_at_the_deadline(
    cache: GitMirrorCache, recorder: Recorder, tmp_path: Path, http_remote: GitHttpServer, wait_for: Callable[..., None]
) -> None:
    http_remote.mode = "hang"
    url = parse_git_url(http_remote.url())
    with pytest.raises(ImportFailedError, match="did not finish within the import timeout"):
        cache.checkout(request(url, timeout_s=1.5), tmp_path / "code")
    assert recorder.calls()[-1].command == "fetch"
    assert any(path.endswith("/info/refs?service=git-upload-pack") for path, _ in http_remote.requests)
    # git and its git-remote-http grandchild (which holds the connection) are both gone.
    wait_for(lambda: _processes_mentioning(url.url) == [], what="the hung git processes to exit", timeout=5)
    with open(cache.mirror_path(url).with_suffix(".lock"), "w") as lock:  # and the lock is free
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


# --------------------------------------------------------------------------- locking and concurrency


def test_import_waits_for_the_mirror_lock_until_its_deadline(
    cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    lock_path = cache.mirror_path(origin.url).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ImportFailedError, match="waiting for another import"):
            cache.checkout(request(origin.url, timeout_s=0.5), tmp_path / "one")
        assert recorder.calls() == []
    assert cache.checkout(request(origin.url), tmp_path / "two").commit == origin.shas["c3"]


def test_concurrent_imports_of_one_repo_both_succeed(
    cache: GitMirrorCache, origin: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    tip = bulk_commits(origin.path, 2000)  # enough objects that the cold fetch takes a while
    barrier = threading.Barrier(2)
    results: dict[int, GitCheckout | BaseException] = {}

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = cache.checkout(request(origin.url, "trunk"), tmp_path / f"run{i}")
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    checkouts = [results[0], results[1]]
    assert all(isinstance(r, GitCheckout) for r in checkouts), checkouts
    assert {r.commit for r in checkouts if isinstance(r, GitCheckout)} == {tip}
    assert sorted(r.warm for r in checkouts if isinstance(r, GitCheckout)) == [False, True]
    assert recorder.commands().count("init") == 1
    for i in range(2):
        assert head_of(tmp_path / f"run{i}") == tip


# --------------------------------------------------------------------------- submodules


@pytest.fixture
def with_submodule(origin: Origin, tmp_path: Path) -> Origin:
    lib = tmp_path / "lib"
    git("init", "-q", "-b", "main", str(lib))
    commit(lib, "lib.txt", "library")
    git("-C", str(origin.path), "submodule", "add", "-q", f"file://{lib}", "vendor/lib")
    git("-C", str(origin.path), "commit", "-q", "-m", "add submodule")
    origin.shas["sub"] = head_of(origin.path)
    return origin


def test_submodules_are_off_by_default(
    cache: GitMirrorCache, with_submodule: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    dest = tmp_path / "code"
    cache.checkout(request(with_submodule.url, "trunk"), dest)
    assert (dest / ".gitmodules").exists()
    assert list((dest / "vendor" / "lib").iterdir()) == []
    assert "submodule" not in recorder.commands()


def test_submodules_on_request(
    cache: GitMirrorCache, with_submodule: Origin, recorder: Recorder, tmp_path: Path
) -> None:
    dest = tmp_path / "code"
    cache.checkout(request(with_submodule.url, "trunk", submodules=True), dest)
    assert (dest / "vendor" / "lib" / "lib.txt").read_text() == "library"
    subs = [c for c in recorder.calls() if c.command == "submodule"]
    assert len(subs) == 1
    _assert_hardened(subs[0])


def test_submodule_with_hostile_url_is_refused(cache: GitMirrorCache, with_submodule: Origin, tmp_path: Path) -> None:
    repo = with_submodule.path
    git("-C", str(repo), "config", "--file", ".gitmodules", "submodule.vendor/lib.url", "ext::sh -c touch% /tmp/pwned")
    git("-C", str(repo), "commit", "-q", "-am", "hostile submodule")
    with pytest.raises(PolicyError, match="remote-helper transport"):
        cache.checkout(request(with_submodule.url, "trunk", submodules=True), tmp_path / "code")
    assert not (tmp_path / "code").exists()
