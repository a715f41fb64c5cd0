"""Host-side git imports: a bare mirror per remote URL, and a self-contained checkout per run.

The first import of a URL fetches its branches and tags into `<cache>/<sha256(url)[:24]>.git`;
later imports only fetch (or nothing at all when the wanted commit is already there), then
`clone --local --no-hardlinks` copies the packed objects into the run's directory (a local file
copy, no network; not hardlinks, since runs may write to their checkout and must not be able to
corrupt the cache that later runs import from).

Every git process is started by one helper that fixes its argv and environment: no prompts,
no system/global config, no hooks, no submodules unless asked, an allow-list of transports,
a wall-clock deadline, and credentials only in the environment (never argv, never
`.git/config`). Anything surfaced from git's stderr is scrubbed of the credential first.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from runner.errors import ImportFailedError, PolicyError
from runner.manifest.giturl import GitUrl, GitUrlError, parse_git_url, validate_git_ref

Progress = Callable[[str], None]

_PRIVATE_DIR = 0o700
_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FULL_SHA = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
# Inherited variables that would let the caller's environment steer git or ssh.
_DROPPED_ENV = frozenset({"SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY", "XDG_CONFIG_HOME", "HOME"})
_DEFAULT_HINT = "check the URL and that credential_name holds a valid token: `runner secret set NAME`"
_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("could not read username", "could not read password", "authentication failed", "401", "403"),
        "the remote wants credentials: set credential_name to a secret holding a valid token "
        "(`runner secret set NAME`)",
    ),
    (
        ("permission denied (publickey", "host key verification failed"),
        "ssh refused: set credential_name to a secret holding an ssh private key the remote accepts, "
        "and check the host key in ~/.ssh/known_hosts",
    ),
    (
        ("could not resolve host", "connection refused", "failed to connect", "network is unreachable"),
        "check the host name and your network or proxy settings",
    ),
    (
        ("not found", "does not appear to be a git repository"),
        "check the URL; private repositories also answer 'not found' without a valid credential "
        "(`runner secret set NAME`)",
    ),
)


@dataclass(frozen=True)
class GitCredential:
    """A credential from the secret store; never logged, never in argv or `.git/config`."""

    token: str | None = field(default=None, repr=False)  # https: basic auth, user x-access-token
    ssh_private_key: str | None = field(default=None, repr=False)  # ssh: 0600 file, then removed


@dataclass(frozen=True)
class GitImportRequest:
    """One git import as the planner describes it."""

    url: GitUrl
    ref: str | None  # None = the remote's default branch
    credential: GitCredential | None = None
    submodules: bool = False
    allow_local: bool = False  # file://, local paths and loopback http(s) only when True
    timeout_s: float = 600.0  # wall clock for the whole import, lock wait included


@dataclass(frozen=True)
class GitCheckout:
    """The result of an import: a detached checkout of `commit` at `path`."""

    path: Path
    commit: str
    ref: str | None
    warm: bool  # the mirror already existed and at most a fetch was needed


@dataclass(frozen=True)
class _Session:
    """Everything one import's git processes share. `env` may hold the auth header."""

    git: str
    env: Mapping[str, str] = field(repr=False)
    protocols: frozenset[str]
    secrets: tuple[str, ...] = field(repr=False)
    deadline: float
    url: GitUrl


@dataclass(frozen=True)
class _Result:
    returncode: int
    stdout: str
    stderr: str


class GitMirrorCache:
    """Bare mirrors under `cache_dir`, one per normalised URL, shared by all runs."""

    def __init__(self, cache_dir: Path, git: str = "git") -> None:
        self._cache_dir = cache_dir
        self._git = git

    def mirror_path(self, url: GitUrl) -> Path:
        return self._cache_dir / f"{hashlib.sha256(url.url.encode()).hexdigest()[:24]}.git"

    def checkout(self, request: GitImportRequest, dest: Path, on_progress: Progress | None = None) -> GitCheckout:
        """Import `request` into `dest` (absent or empty); raises PolicyError before any git runs."""
        url, ref = _validated(request)
        created = _claim_dest(dest)
        progress = on_progress or _no_progress
        with _git_session(self._git, url, request) as session:
            try:
                commit, warm = self._sync_and_clone(session, ref, dest, progress)
                _finish_checkout(session, dest, commit, request.submodules, progress)
            except BaseException:
                _discard(dest, created)
                raise
        return GitCheckout(path=dest, commit=commit, ref=ref, warm=warm)

    def _sync_and_clone(self, session: _Session, ref: str | None, dest: Path, progress: Progress) -> tuple[str, bool]:
        """Bring the mirror up to date and clone it into `dest`, all under the mirror's lock."""
        mirror = self.mirror_path(session.url)
        _private_dirs(self._cache_dir)
        with _locked(mirror.with_suffix(".lock"), session):
            warm = mirror.is_dir()
            if not warm:
                progress(f"cloning {session.url.display} into the git cache")
                _create_mirror(session, mirror, fetch_head=ref is None)
            elif ref is not None and _cached_commit(session, mirror, ref):
                progress(f"{session.url.display}@{ref} is already cached")
            else:
                progress(f"fetching {session.url.display}")
                _fetch(session, mirror, fetch_head=ref is None)
            commit = _resolve(session, mirror, ref)
            progress(f"checking out {session.url.display}@{commit[:12]}")
            # --no-hardlinks: the checkout is mounted read-write into a container (often as root), so it must
            # not share object files with the cache, or a run could corrupt what later runs import.
            clone = ["clone", "--quiet", "--local", "--no-hardlinks", "--no-checkout", "--no-recurse-submodules"]
            # Our own mirror is the one local path git may read here.
            _check(session, [*clone, "--", str(mirror), str(dest)], "copying from the git cache", {"file"})
        return commit, warm


def _validated(request: GitImportRequest) -> tuple[GitUrl, str | None]:
    """Re-check URL, ref and policy before any git process starts (defence in depth)."""
    try:
        url = parse_git_url(request.url.url)
        ref = None if request.ref is None else validate_git_ref(request.ref)
    except GitUrlError as exc:
        raise PolicyError(exc.message, hint=exc.hint) from None
    if url.is_local and not request.allow_local:
        raise PolicyError(
            f"git import from {url.display} refused: local repositories and loopback URLs are disabled",
            hint="import from an https:// or ssh remote (local git sources are a runner extension, off by default)",
        )
    return url, ref


def _claim_dest(dest: Path) -> bool:
    """True when `dest` does not exist yet (so a failure removes it entirely)."""
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise ImportFailedError(
            f"git import target {dest} already exists and is not an empty directory",
            hint="import into a fresh directory",
        )
    return not dest.exists()


def _discard(dest: Path, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir() if dest.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _no_progress(_message: str) -> None:
    return None


@contextlib.contextmanager
def _git_session(git: str, url: GitUrl, request: GitImportRequest) -> Iterator[_Session]:
    """A private HOME (holding the ssh key, if any) for one import; removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="runner-git-"))
    try:
        credential = request.credential or GitCredential()
        key = _write_key(home, credential.ssh_private_key) if url.scheme == "ssh" else None
        token = credential.token if url.scheme in ("https", "http") else None
        protocols = {"https", "ssh"} | ({"file", "http"} if request.allow_local else set())
        yield _Session(
            git=git,
            env=_hardened_env(home, url, token, key),
            protocols=frozenset(protocols),
            secrets=_secret_forms(token),
            deadline=time.monotonic() + request.timeout_s,
            url=url,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _write_key(home: Path, key: str | None) -> Path | None:
    if not key:
        return None
    path = home / "id_git"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key if key.endswith("\n") else key + "\n")  # ssh rejects a key without one
    return path


def _hardened_env(home: Path, url: GitUrl, token: str | None, key: Path | None) -> dict[str, str]:
    """The caller's environment minus anything that steers git, plus our fixed settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k not in _DROPPED_ENV}
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=30"]
    if key is not None:
        ssh += ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        LC_ALL="C",  # English messages, so hints can be chosen from git's stderr
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_PROTOCOL_FROM_USER="0",
        GIT_ASKPASS="",  # set-but-empty: git then skips core.askPass and SSH_ASKPASS too
        SSH_ASKPASS="",
        SSH_ASKPASS_REQUIRE="never",
        GIT_SSH_COMMAND=shlex.join(ssh),
        GIT_SSH_VARIANT="ssh",
    )
    if token:
        # Scoped to the repository's origin, so a submodule on another host never receives it.
        origin = urlsplit(url.url)
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0=f"http.{origin.scheme}://{origin.netloc}/.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
        )
    return env


def _secret_forms(token: str | None) -> tuple[str, ...]:
    """Every spelling of the token that could reach git's output; longest first."""
    if not token:
        return ()
    forms = {
        token,
        quote(token, safe=""),
        base64.b64encode(token.encode()).decode(),
        base64.b64encode(f"x-access-token:{token}".encode()).decode(),
    }
    return tuple(sorted(forms, key=len, reverse=True))


def _config_args(protocols: frozenset[str]) -> list[str]:
    settings = [
        "protocol.allow=never",
        *(f"protocol.{name}.allow=always" for name in sorted(protocols)),
        "core.hooksPath=/dev/null",
        "submodule.recurse=false",
        "credential.helper=",  # empty value resets the helper list: no keychain, no store
        "gc.autoDetach=false",  # a detached gc would outlive the mirror lock
    ]
    return [arg for setting in settings for arg in ("-c", setting)]


def _run(session: _Session, args: list[str], what: str, extra: frozenset[str] = frozenset()) -> _Result:
    """Run one hardened git command with the session's remaining time as its timeout."""
    remaining = session.deadline - time.monotonic()
    if remaining <= 0:
        raise _timed_out(session, what)
    argv = [session.git, *_config_args(session.protocols | extra), *args]
    try:
        # A new session: no controlling terminal for git or ssh to prompt on, and one process
        # group to kill on timeout (git-remote-https and ssh are grandchildren).
        proc = subprocess.Popen(
            argv,
            env=dict(session.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise ImportFailedError(f"cannot run git ({session.git}): {exc.strerror}", hint="install git") from None
    try:
        out, err = proc.communicate(timeout=remaining)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise _timed_out(session, what) from None
    except BaseException:
        _kill_group(proc)  # Ctrl-C does not reach a process in its own session
        raise
    return _Result(proc.returncode, out, err)


def _check(session: _Session, args: list[str], what: str, extra: frozenset[str] | set[str] = frozenset()) -> str:
    result = _run(session, args, what, frozenset(extra))
    if result.returncode != 0:
        tail = _scrub(_tail(result.stderr), session.secrets)
        raise ImportFailedError(
            f"git import of {session.url.display}: {what} failed (git exit {result.returncode}): {tail}",
            hint=_hint_for(tail),
        )
    return result.stdout


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


def _timed_out(session: _Session, what: str) -> ImportFailedError:
    return ImportFailedError(
        f"git import of {session.url.display}: {what} did not finish within the import timeout",
        hint="check the network, or raise the import timeout for large repositories",
    )


def _tail(stderr: str, lines: int = 12, chars: int = 1500) -> str:
    kept = [line.strip() for line in stderr.splitlines() if line.strip()][-lines:]
    text = " | ".join(kept) or "no error output"
    return text[-chars:]


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return _USERINFO.sub(r"\1***@", text)


def _hint_for(stderr: str) -> str:
    lowered = stderr.lower()
    return next((hint for needles, hint in _HINTS if any(n in lowered for n in needles)), _DEFAULT_HINT)


def _private_dirs(path: Path) -> None:
    """Create `path` and any missing parents as 0700 (mkdir's parents= would use 0777&umask)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=_PRIVATE_DIR, exist_ok=True)
    path.chmod(_PRIVATE_DIR)


@contextlib.contextmanager
def _locked(lock_path: Path, session: _Session) -> Iterator[None]:
    """An exclusive flock on `lock_path`, waited for until the session's deadline."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() + delay > session.deadline:
                    raise _timed_out(session, "waiting for another import of the same repository") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _create_mirror(session: _Session, mirror: Path, *, fetch_head: bool) -> None:
    """Build the mirror in a temporary directory and rename it into place when complete."""
    for stale in mirror.parent.glob(f"{mirror.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # only ever created under this lock: a crash's leftovers
    tmp = Path(tempfile.mkdtemp(prefix=f"{mirror.name}.tmp-", dir=mirror.parent))
    try:
        _check(session, ["init", "--quiet", "--bare", "--template=", "--", str(tmp)], "creating the git cache")
        _fetch(session, tmp, fetch_head=fetch_head)
        tmp.rename(mirror)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fetch(session: _Session, repo: Path, *, fetch_head: bool) -> None:
    """Fetch branches and tags (not refs/pull/* and the like) and prune deleted ones."""
    flags = ["fetch", "--quiet", "--prune", "--no-recurse-submodules", "--no-write-fetch-head"]
    _check(session, ["-C", str(repo), *flags, "--", session.url.url, *_FETCH_REFSPECS], "fetching")
    if fetch_head:
        _update_default_branch(session, repo)


def _update_default_branch(session: _Session, repo: Path) -> None:
    """Point the mirror's HEAD where the remote's HEAD points (fetch alone never moves it)."""
    out = _check(session, ["ls-remote", "--symref", "--", session.url.url, "HEAD"], "reading the default branch")
    for line in out.splitlines():
        target, _, name = line.removeprefix("ref: ").partition("\t")
        if line.startswith("ref: ") and name == "HEAD" and target.startswith("refs/heads/"):
            try:
                validate_git_ref(target)  # it came from the remote: hostile until checked
            except GitUrlError:
                return
            _check(session, ["-C", str(repo), "symbolic-ref", "HEAD", target], "setting the default branch")
            return


def _cached_commit(session: _Session, mirror: Path, ref: str) -> bool:
    """True when `ref` is a sha (not a branch or tag name) whose commit the mirror already has."""
    if not _SHA.match(ref) or len(ref) < 7:
        return False
    names = _run(session, ["-C", str(mirror), "for-each-ref", f"refs/heads/{ref}", f"refs/tags/{ref}"], "resolving")
    if names.returncode != 0 or names.stdout.strip():
        return False
    return _rev_parse(session, mirror, ref) is not None


def _resolve(session: _Session, mirror: Path, ref: str | None) -> str:
    """The full sha `ref` names: a branch, then a tag, then a commit sha; else a helpful error."""
    if ref is None:
        candidates = ["HEAD"]
    elif ref.startswith("refs/"):
        candidates = [ref]
    else:
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}", *([ref] if _SHA.match(ref) else [])]
    for candidate in candidates:
        commit = _rev_parse(session, mirror, candidate)
        if commit is not None:
            return commit
    if ref is not None and _FULL_SHA.match(ref):
        # A commit no branch or tag reaches (e.g. a pull request head): ask for it by id.
        fetch = ["-C", str(mirror), "fetch", "--quiet", "--no-recurse-submodules", "--no-write-fetch-head"]
        if _run(session, [*fetch, "--", session.url.url, ref], "fetching the commit").returncode == 0:
            commit = _rev_parse(session, mirror, ref)
            if commit is not None:
                return commit
    raise _missing_ref(session, mirror, ref)


def _rev_parse(session: _Session, repo: Path, name: str) -> str | None:
    result = _run(session, ["-C", str(repo), "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], "resolving")
    return result.stdout.strip() if result.returncode == 0 else None


def _missing_ref(session: _Session, mirror: Path, ref: str | None) -> ImportFailedError:
    display = session.url.display
    if ref is None:
        return ImportFailedError(
            f"git import of {display}: the remote has no default branch (is the repository empty?)",
            hint="set `ref:` to a branch, tag or commit",
        )
    listing = _check(session, ["-C", str(mirror), "for-each-ref", "--format=%(refname)"], "listing refs")
    names = sorted({n.removeprefix("refs/heads/").removeprefix("refs/tags/") for n in listing.split()})
    close = difflib.get_close_matches(ref, names, n=10, cutoff=0.6)
    shown = close or names[:10]
    label = "close matches" if close else "some branches and tags"
    return ImportFailedError(
        f"git import of {display}: ref '{ref}' is not a branch, tag or commit of the repository",
        hint=f"{label}: {', '.join(shown)}" if shown else "the repository has no branches or tags",
    )


def _finish_checkout(session: _Session, dest: Path, commit: str, submodules: bool, progress: Progress) -> None:
    """Detach at `commit`, replace the cache path with the clean URL, then (maybe) submodules."""
    repo = ["-C", str(dest)]
    _check(
        session,
        [*repo, "checkout", "--quiet", "--detach", "--no-recurse-submodules", commit, "--"],
        "checkout",
    )
    _check(session, [*repo, "remote", "set-url", "--", "origin", session.url.display], "setting the origin URL")
    if submodules:
        progress(f"updating submodules of {session.url.display}")
        _check_submodule_urls(session, dest)
        _check(session, [*repo, "submodule", "update", "--init", "--recursive", "--"], "updating submodules")


def _check_submodule_urls(session: _Session, dest: Path) -> None:
    """Refuse `.gitmodules` URLs our parser would refuse in a manifest (relative ones resolve
    against the origin URL, already checked); the protocol allow-list also covers nested ones."""
    modules = dest / ".gitmodules"
    if not modules.is_file():
        return
    args = ["config", "--file", str(modules), "--get-regexp", r"^submodule\..*\.url$"]
    result = _run(session, args, "reading .gitmodules")
    for line in result.stdout.splitlines():
        _, _, url = line.partition(" ")
        if url.startswith(("./", "../")):
            continue
        try:
            parsed = parse_git_url(url)
        except GitUrlError as exc:
            raise PolicyError(f"submodule of {session.url.display}: {exc.message}", hint=exc.hint) from None
        if parsed.is_local and "file" not in session.protocols:
            raise PolicyError(f"submodule of {session.url.display} points at local repository {parsed.display}")
