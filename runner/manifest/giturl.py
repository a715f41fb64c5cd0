"""Validation and normalisation of git import URLs and refs (pure: no I/O, stdlib only).

A manifest's git URL ends up as an argument to `git`, which treats many strings as something
other than a remote: `ext::sh -c …` runs a command, `-oProxyCommand=…` is an ssh option, a bare
`github.com/o/r` is a *local path*, and `https://user:token@host` writes the token into
`.git/config`. Here every accepted spelling is mapped to one canonical URL git will be given,
and everything else is refused with a message that never echoes a credential and a hint that
says what to write instead. The manifest layer turns `GitUrlError` into a located problem.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal
from urllib.parse import SplitResult, quote, unquote, urlsplit

Scheme = Literal["https", "ssh", "file", "http"]

MAX_URL_LENGTH = 2048
MAX_REF_LENGTH = 255

_SCHEME_SLASHES = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCHEME_COLON = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_TRANSPORT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9+.-]*)::")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SSH_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
# An IPv6 literal in host position: after an optional scheme:// and an optional user@.
_HOST_IPV6 = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^/@\[\]]*@)?)\[[0-9A-Fa-f:.]+\]")
_PORT_PATH = re.compile(r"^\d+(/|$)")
_LOOPBACK_NAMES = frozenset({"localhost"})
_REF_FORBIDDEN = frozenset("~^:?*[\\")

_CREDENTIAL_HINT = (
    "remove the credentials from the URL; store the token with `runner secret set NAME` "
    "and reference it with `credential_name: NAME`"
)


class GitUrlError(ValueError):
    """A git URL or ref that runner refuses; `message` never contains a credential."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class GitUrl:
    """A validated git remote. `url` is what git is given; `display` is safe to print or store."""

    url: str
    scheme: Scheme
    host: str
    path: str
    display: str
    is_local: bool


def parse_git_url(raw: str) -> GitUrl:
    """Validate `raw` and return its canonical form, or raise GitUrlError saying what to fix."""
    _check_size(raw)
    _check_transport(raw)
    _check_characters(raw)
    shown = redact_url(raw)
    if raw.startswith("-"):
        raise GitUrlError(
            "git URL starts with '-', which git would read as an option",
            hint="write e.g. https://github.com/OWNER/REPO.git",
        )
    _check_double_colon(raw, shown)
    if raw.startswith("/"):
        return _local_path(raw, shown)
    match = _SCHEME_SLASHES.match(raw)
    if match:
        return _scheme_url(raw, match.group(1).lower(), shown)
    scp = _scp_parts(raw, shown)
    if scp is not None:
        return _scp_like(scp, shown)
    match = _SCHEME_COLON.match(raw)
    if match:
        raise _unknown_scheme(match.group(1), shown)
    return _scheme_less(raw, shown)


def redact_url(raw: str) -> str:
    """`raw` with any user-info replaced by `***`, short enough for one line of an error.

    Over-redacts on purpose: everything between `://` and the last `@` goes, because a secret
    may itself contain `/` or `:` and a URL parser would then split it somewhere else.
    """
    head, sep, rest = raw.partition("://")
    if sep and "@" in rest:
        shown = f"{head}://***@{rest.rpartition('@')[2]}"
    elif not sep and "@" in raw and ":" in raw.partition("@")[0]:
        shown = f"***@{raw.rpartition('@')[2]}"
    else:
        shown = raw
    query = min((i for i in (shown.find("?"), shown.find("#")) if i != -1), default=-1)
    if query != -1:
        shown = shown[: query + 1] + "***"  # `?private_token=…` is a common way to paste a secret
    return shown if len(shown) <= 200 else shown[:197] + "..."


def validate_git_ref(ref: str) -> str:
    """Return `ref` (a branch, tag or commit sha) unchanged if git and runner can use it safely."""
    if not isinstance(ref, str):
        raise GitUrlError(
            f"git ref must be a string, got {type(ref).__name__}",
            hint="quote it in the manifest, e.g. ref: '1.10'",
        )
    problem = _ref_problem(ref)
    if problem:
        shown = ref if ref and _printable(ref) and len(ref) <= 80 else repr(ref[:80])
        raise GitUrlError(
            f"git ref {shown!s} is not usable: {problem}",
            hint="use a branch name, a tag or a commit sha, e.g. ref: main",
        )
    return ref


def _ref_problem(ref: str) -> str | None:
    """Why git (`check-ref-format`) or runner would refuse `ref`, or None."""
    checks: tuple[tuple[bool, str], ...] = (
        (ref == "", "it is empty"),
        (len(ref) > MAX_REF_LENGTH, f"it is longer than {MAX_REF_LENGTH} characters"),
        (ref.startswith("-"), "it starts with '-' and would be read as an option"),
        (not _printable(ref), "it contains whitespace or control characters"),
        (".." in ref, "it contains '..'"),
        ("@{" in ref, "it contains '@{'"),
        (ref == "@", "'@' alone is not a ref"),
        (bool(_REF_FORBIDDEN & set(ref)), "it contains one of ~ ^ : ? * [ \\"),
        (ref.startswith("/") or ref.endswith("/") or "//" in ref, "it has an empty path component"),
        (ref.endswith(".lock"), "it ends with '.lock'"),
        (ref.endswith("."), "it ends with '.'"),
        (any(part.startswith(".") for part in ref.split("/")), "a component starts with '.'"),
    )
    return next((why for failed, why in checks if failed), None)


def _printable(text: str) -> bool:
    """No whitespace, no control/format/unassigned characters (Unicode category C* or Z*)."""
    return not any(ch.isspace() or unicodedata.category(ch)[0] in "CZ" for ch in text)


def _check_size(raw: str) -> None:
    if not isinstance(raw, str):
        raise GitUrlError(f"git URL must be a string, got {type(raw).__name__}")
    if raw == "":
        raise GitUrlError("git URL is empty", hint="write e.g. https://github.com/OWNER/REPO.git")
    if len(raw) > MAX_URL_LENGTH:
        raise GitUrlError(f"git URL is longer than {MAX_URL_LENGTH} characters")


def _check_transport(raw: str) -> None:
    transport = _TRANSPORT.match(raw)
    if transport:
        raise GitUrlError(
            f"git URL uses the '{transport.group(1)}::' remote-helper transport, which can run arbitrary commands",
            hint="use an https:// or ssh:// URL",
        )


def _check_characters(raw: str) -> None:
    bad = next((i for i, ch in enumerate(raw) if not _printable(ch)), None)
    if bad is not None:
        # The URL itself is not echoed: it may be a pasted secret or contain terminal escapes.
        raise GitUrlError(
            f"git URL contains whitespace or a control character at position {bad + 1}",
            hint="remove spaces, tabs, newlines and invisible characters from the URL",
        )


def _check_double_colon(raw: str, shown: str) -> None:
    # An IPv6 host literal ([::1]) is the one legitimate place for '::'.
    if "::" in _HOST_IPV6.sub(r"\1[]", raw, count=1):
        raise GitUrlError(
            f"git URL {shown} contains '::' (git reads 'transport::address' as a remote helper)",
            hint="use an https:// or ssh:// URL",
        )


def _scheme_url(raw: str, scheme: str, shown: str) -> GitUrl:
    parsers = {"https": _https, "http": _http, "git": _vessl_git, "ssh": _ssh, "file": _file}
    parser = parsers.get(scheme)
    if parser is None:
        raise _unknown_scheme(scheme, shown)
    if "@" in raw and scheme != "ssh":
        raise GitUrlError(f"git URL {shown} embeds credentials", hint=_CREDENTIAL_HINT)
    try:
        split = urlsplit(raw)
        port = split.port
    except ValueError:
        # urllib's message quotes the offending part, which may be a password: not echoed.
        raise GitUrlError(
            f"git URL {shown} is malformed (bad port or IPv6 address)",
            hint="write e.g. https://HOST:PORT/OWNER/REPO.git",
        ) from None
    if split.query or split.fragment or raw.endswith(("?", "#")):
        raise GitUrlError(
            f"git URL {shown} has a query or fragment",
            hint="put the branch, tag or commit in `ref:` and remove the ?… or #… part",
        )
    return parser(split, port, shown)


def _https(split: SplitResult, port: int | None, shown: str) -> GitUrl:
    host = _host(split.hostname, shown)
    path = _repo_path(split.path, shown)
    url = f"https://{_netloc(host, port)}{path}"
    return GitUrl(url, "https", host, path, url, is_local=_is_loopback(host))


def _http(split: SplitResult, port: int | None, shown: str) -> GitUrl:
    host = _host(split.hostname, shown)
    if not _is_loopback(host):
        raise GitUrlError(
            f"git URL {shown} uses plain http://, which sends code and credentials unencrypted",
            hint="use https:// (http:// is accepted only for 127.0.0.1, ::1 and localhost)",
        )
    path = _repo_path(split.path, shown)
    url = f"http://{_netloc(host, port)}{path}"
    return GitUrl(url, "http", host, path, url, is_local=True)


def _vessl_git(split: SplitResult, port: int | None, shown: str) -> GitUrl:
    """VESSL's `git://github.com/o/r` names a hosted repo; it is fetched over https, never
    the unauthenticated git daemon protocol."""
    host = (split.hostname or "").lower()
    if port is not None or not _plausible_public_host(host):
        raise GitUrlError(
            f"git URL {shown} does not name a hosted repository",
            hint="write git://github.com/OWNER/REPO or https://HOST/OWNER/REPO.git",
        )
    path = _repo_path(split.path, shown)
    url = f"https://{host}{path}"
    return GitUrl(url, "https", host, path, url, is_local=False)


def _ssh(split: SplitResult, port: int | None, shown: str) -> GitUrl:
    userinfo, at, _ = split.netloc.rpartition("@")
    if ":" in userinfo or userinfo.count("@"):
        raise GitUrlError(f"git URL {shown} embeds credentials", hint=_CREDENTIAL_HINT)
    if at and not _SSH_USER.match(userinfo):
        raise GitUrlError(
            f"git URL {shown} has an unusable ssh user name",
            hint="use a plain user name such as git@",
        )
    host = _host(split.hostname, shown)
    path = _repo_path(split.path, shown)
    user = f"{userinfo}@" if at else ""
    url = f"ssh://{user}{_netloc(host, port)}{path}"
    return GitUrl(url, "ssh", host, path, url, is_local=False)


def _file(split: SplitResult, port: int | None, shown: str) -> GitUrl:
    if split.netloc not in ("", "localhost") or port is not None:
        raise GitUrlError(
            f"git URL {shown} names a remote host in a file:// URL",
            hint="write file:///ABSOLUTE/PATH (three slashes)",
        )
    # git percent-decodes file:// paths, so compare and re-encode the decoded form.
    return _local_path(unquote(split.path), shown)


def _local_path(path: str, shown: str) -> GitUrl:
    # Re-rooted first: normpath keeps a leading '//' (host syntax) and turns '' into '.'.
    normal = posixpath.normpath("/" + path.lstrip("/"))
    if normal == "/":
        raise GitUrlError(f"git URL {shown} names the filesystem root", hint="name a repository")
    url = "file://" + quote(normal, safe="/")
    return GitUrl(url, "file", "", normal, url, is_local=True)


def _scp_parts(raw: str, shown: str) -> tuple[str, str, str] | None:
    """Split git's scp-like `[user@]host:path` into (user, host, path), or None if it is not one.

    git's rule: a ':' before any '/' makes the string an ssh address. Without a user, the host
    must contain a dot or be an IPv6 literal, so `javascript:…` and `C:\\…` are read as (refused)
    schemes rather than as ssh hosts.
    """
    colon, slash = raw.find(":"), raw.find("/")
    if colon <= 0 or (slash != -1 and slash < colon):
        return None
    at = raw.find("@")
    user, rest = "", raw
    if at == 0:
        raise GitUrlError(f"git URL {shown} has an empty ssh user name", hint="write e.g. git@HOST:OWNER/REPO")
    if at != -1 and (slash == -1 or at < slash):
        if ":" in raw[:at] and ":" in raw[at + 1 :]:
            raise GitUrlError(f"git URL {shown} embeds credentials", hint=_CREDENTIAL_HINT)
        if ":" not in raw[:at]:
            user, rest = raw[:at], raw[at + 1 :]
    if rest.startswith("["):
        literal, _, after = rest[1:].partition("]")
        host, path = literal, after[1:] if after.startswith(":") else ""
    else:
        host, _, path = rest.partition(":")
    if not user and "." not in host and ":" not in host:
        return None
    return user, host, path


def _scp_like(parts: tuple[str, str, str], shown: str) -> GitUrl:
    user, host_part, path = parts
    if user and not _SSH_USER.match(user):
        raise GitUrlError(f"git URL {shown} has an unusable ssh user name", hint="use e.g. git@HOST:OWNER/REPO")
    host = _host(host_part, shown)
    if path.startswith("-"):
        raise GitUrlError(
            f"git URL {shown} has a path starting with '-', which git would read as an option",
            hint="use a real repository path",
        )
    if _PORT_PATH.match(path):
        raise GitUrlError(
            f"git URL {shown} is ambiguous: git reads 'HOST:{path.split('/')[0]}/…' as a path, not a port",
            hint="write https://HOST:PORT/PATH or ssh://HOST:PORT/PATH",
        )
    path = _repo_path(path, shown, absolute=False)
    url = f"{user}{'@' if user else ''}{_bracket(host)}:{path}"
    return GitUrl(url, "ssh", host, path, url, is_local=False)


def _scheme_less(raw: str, shown: str) -> GitUrl:
    """`github.com/o/r.git` means https; git itself would treat it as a local relative path."""
    first, slash, _ = raw.partition("/")
    if not slash or raw.startswith((".", "~")) or not _plausible_public_host(first):
        raise GitUrlError(
            f"git URL {shown} is a relative local path",
            hint="write https://HOST/OWNER/REPO.git, or an absolute path for a local repository",
        )
    # Exactly the checks (and result) of the https:// spelling, so both normalise alike.
    return _scheme_url(f"https://{raw}", "https", shown)


def _host(host: str | None, shown: str) -> str:
    if not host:
        raise GitUrlError(f"git URL {shown} has no host", hint="write e.g. https://github.com/OWNER/REPO.git")
    if host.startswith("-"):
        raise GitUrlError(
            f"git URL {shown} has a host starting with '-', which git/ssh would read as an option",
            hint="use a real host name",
        )
    host = host.lower()
    if _ip(host) is None and not _hostname(host):
        raise GitUrlError(f"git URL {shown} has an invalid host name", hint="use a DNS name or an IP address")
    return host


def _repo_path(path: str, shown: str, *, absolute: bool = True) -> str:
    stripped = path.rstrip("/")
    if stripped in ("", "/") or (not absolute and stripped == "~"):
        raise GitUrlError(f"git URL {shown} names no repository", hint="add /OWNER/REPO to the URL")
    return stripped


def _hostname(host: str) -> bool:
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)


def _plausible_public_host(host: str) -> bool:
    labels = host.split(".")
    return _hostname(host) and len(labels) >= 2 and labels[-1].isalpha() and len(labels[-1]) >= 2


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    address = _ip(host)
    return host in _LOOPBACK_NAMES or (address is not None and address.is_loopback)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _netloc(host: str, port: int | None) -> str:
    return _bracket(host) if port is None else f"{_bracket(host)}:{port}"


def _unknown_scheme(scheme: str, shown: str) -> GitUrlError:
    return GitUrlError(
        f"git URL {shown} uses the unsupported scheme '{scheme}:'",
        hint="use https://, ssh://, git@HOST:PATH or git://github.com/OWNER/REPO",
    )
