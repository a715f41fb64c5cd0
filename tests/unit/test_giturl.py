"""Git URL and ref validation: every accepted spelling, every hostile form, and no leaked secret."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.manifest.giturl import GitUrl, GitUrlError, parse_git_url, redact_url, validate_git_ref

# raw → (url, scheme, host, path, is_local)
ACCEPTED: list[tuple[str, tuple[str, str, str, str, bool]]] = [
    ("https://github.com/o/r.git", ("https://github.com/o/r.git", "https", "github.com", "/o/r.git", False)),
    ("https://github.com/o/r", ("https://github.com/o/r", "https", "github.com", "/o/r", False)),
    ("https://GitHub.COM/o/r/", ("https://github.com/o/r", "https", "github.com", "/o/r", False)),
    (
        "https://git.example.com:8443/g/s/r.git",
        ("https://git.example.com:8443/g/s/r.git", "https", "git.example.com", "/g/s/r.git", False),
    ),
    (
        "git://github.com/vessl-ai/examples",
        ("https://github.com/vessl-ai/examples", "https", "github.com", "/vessl-ai/examples", False),
    ),
    ("git://bitbucket.org/o/r.git", ("https://bitbucket.org/o/r.git", "https", "bitbucket.org", "/o/r.git", False)),
    ("github.com/o/r.git", ("https://github.com/o/r.git", "https", "github.com", "/o/r.git", False)),
    ("gitlab.com/group/sub/r", ("https://gitlab.com/group/sub/r", "https", "gitlab.com", "/group/sub/r", False)),
    ("ssh://git@github.com/o/r.git", ("ssh://git@github.com/o/r.git", "ssh", "github.com", "/o/r.git", False)),
    ("ssh://git@github.com:2222/o/r", ("ssh://git@github.com:2222/o/r", "ssh", "github.com", "/o/r", False)),
    ("ssh://gitserver/srv/r.git", ("ssh://gitserver/srv/r.git", "ssh", "gitserver", "/srv/r.git", False)),
    ("ssh://git@[2001:db8::1]:22/r", ("ssh://git@[2001:db8::1]:22/r", "ssh", "2001:db8::1", "/r", False)),
    ("git@github.com:o/r.git", ("git@github.com:o/r.git", "ssh", "github.com", "o/r.git", False)),
    ("git@gitserver:r.git", ("git@gitserver:r.git", "ssh", "gitserver", "r.git", False)),
    ("github.com:o/r", ("github.com:o/r", "ssh", "github.com", "o/r", False)),
    ("file:///srv/repo", ("file:///srv/repo", "file", "", "/srv/repo", True)),
    ("file:///srv/a%25b", ("file:///srv/a%25b", "file", "", "/srv/a%b", True)),
    ("file:///srv/x/../repo/", ("file:///srv/repo", "file", "", "/srv/repo", True)),
    ("/srv/repo", ("file:///srv/repo", "file", "", "/srv/repo", True)),
    ("/srv/repo.git/", ("file:///srv/repo.git", "file", "", "/srv/repo.git", True)),
    ("http://127.0.0.1:8080/r.git", ("http://127.0.0.1:8080/r.git", "http", "127.0.0.1", "/r.git", True)),
    ("http://localhost/r", ("http://localhost/r", "http", "localhost", "/r", True)),
    ("http://[::1]:9/r", ("http://[::1]:9/r", "http", "::1", "/r", True)),
    ("https://127.0.0.1:1/r.git", ("https://127.0.0.1:1/r.git", "https", "127.0.0.1", "/r.git", True)),
]

# raw → a fragment the message must contain
REFUSED: list[tuple[str, str]] = [
    ("", "empty"),
    ("ext::sh -c touch% /tmp/pwned", "'ext::' remote-helper transport"),
    ("ext::sh", "'ext::' remote-helper transport"),
    ("fd::17", "'fd::' remote-helper transport"),
    ("git-remote-x::foo", "remote-helper transport"),
    ("https://github.com/o::r", "contains '::'"),
    ("git@github.com:o/r::x", "contains '::'"),
    ("github.com:[::]", "contains '::'"),  # an IPv6 literal only counts in host position
    ("https://github.com/[::1]", "contains '::'"),
    ("@github.com:o/r", "empty ssh user"),
    ("ssh://@github.com/o/r", "unusable ssh user"),
    ("-oProxyCommand=touch /tmp/x", "position"),  # whitespace is caught first
    ("-oProxyCommand=id:x", "starts with '-'"),
    ("--upload-pack=touch", "starts with '-'"),
    ("ssh://-oProxyCommand=id/r", "host starting with '-'"),
    ("https://-x.com/r", "host starting with '-'"),
    ("git@-oProxyCommand=id:r", "host starting with '-'"),
    ("ssh://-oProxyCommand=id@host/r", "unusable ssh user"),
    ("git@host:-r", "path starting with '-'"),
    ("git@host:--upload-pack=id", "path starting with '-'"),
    ("https://user:pass@github.com/o/r", "embeds credentials"),
    ("https://ghp_abcdef@github.com/o/r", "embeds credentials"),
    ("https://user:pa/ss@github.com/o/r", "embeds credentials"),
    ("http://user:pass@127.0.0.1/r", "embeds credentials"),
    ("git://token@github.com/o/r", "embeds credentials"),
    ("ssh://git:secret@github.com/o/r", "embeds credentials"),
    ("git:secret@github.com:o/r", "embeds credentials"),
    ("https://github.com/o/r\n", "control character"),
    ("https://github.com/o/r\x00", "control character"),
    ("https://github.com/o r", "whitespace"),
    ("\tgithub.com/o/r", "whitespace"),
    ("https://github.com/o/r\u202e", "control character"),  # right-to-left override
    ("https://github.com/o/r\u200b", "control character"),  # zero-width space
    ("repo", "relative local path"),
    ("repo.git", "relative local path"),
    ("./repo", "relative local path"),
    ("../repo", "relative local path"),
    ("~/repo", "relative local path"),
    ("o/r", "relative local path"),
    ("ftp://example.com/r.git", "unsupported scheme 'ftp:'"),
    ("javascript:alert(1)", "unsupported scheme 'javascript:'"),
    ("JavaScript://x.com/r", "unsupported scheme 'javascript:'"),
    ("data:text/plain,x", "unsupported scheme 'data:'"),
    ("git+ssh://github.com/o/r", "unsupported scheme 'git+ssh:'"),
    ("C:\\repo", "unsupported scheme 'C:'"),
    ("http://github.com/o/r", "plain http://"),
    ("http://10.0.0.1/r", "plain http://"),
    ("git://localhost/r", "does not name a hosted repository"),
    ("git://gitserver/r", "does not name a hosted repository"),
    ("git://127.0.0.1/r", "does not name a hosted repository"),
    ("git://github.com:9418/o/r", "does not name a hosted repository"),
    ("git://-x.com/r", "does not name a hosted repository"),
    ("https://github.com", "names no repository"),
    ("https://github.com/", "names no repository"),
    ("github.com/", "names no repository"),
    ("https:///o/r", "no host"),
    ("https://h_x.com/r", "invalid host name"),
    ("https://github.com:99999/o/r", "malformed"),
    ("https://[::1/r", "contains '::'"),
    ("https://[fe80/r", "malformed"),
    ("https://github.com/o/r?x=1", "query or fragment"),
    ("https://github.com/o/r#main", "query or fragment"),
    ("github.com:443/o/r", "ambiguous"),
    ("file://host/srv/r", "remote host in a file:// URL"),
    ("/", "filesystem root"),
    ("file:///../..", "filesystem root"),
    ("FILE://", "filesystem root"),
    ("file://", "filesystem root"),
    ("https://x.com/" + "a" * 2100, "longer than"),
]

CREDENTIAL_URLS = [
    ("https://alice:RNRCANARYpass@github.com/o/r", "RNRCANARYpass"),
    ("https://RNRCANARYtok@github.com/o/r", "RNRCANARYtok"),
    ("https://x:RNRCANARY/with/slash@github.com/o/r", "RNRCANARY"),
    ("https://x:RNRCANARY@evil@github.com/o/r", "RNRCANARY"),
    ("ssh://git:RNRCANARY@github.com/o/r", "RNRCANARY"),
    ("git:RNRCANARY@github.com:o/r", "RNRCANARY"),
    ("http://x:RNRCANARY@localhost/r", "RNRCANARY"),
    ("https://x:RNRCANARY@github.com:99999/o/r", "RNRCANARY"),
    ("https://gitlab.com/o/r.git?private_token=RNRCANARY", "RNRCANARY"),
    ("https://gitlab.com/o/r.git#RNRCANARY", "RNRCANARY"),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED, ids=[raw for raw, _ in ACCEPTED])
def test_accepted_forms_normalise(raw: str, expected: tuple[str, str, str, str, bool]) -> None:
    got = parse_git_url(raw)
    assert (got.url, got.scheme, got.host, got.path, got.is_local) == expected
    assert got.display == got.url


@pytest.mark.parametrize(("raw", "fragment"), REFUSED, ids=[repr(raw)[:60] for raw, _ in REFUSED])
def test_refused_forms_say_why(raw: str, fragment: str) -> None:
    with pytest.raises(GitUrlError) as info:
        parse_git_url(raw)
    assert fragment in info.value.message
    assert str(info.value) == info.value.message


@pytest.mark.parametrize(("raw", "secret"), CREDENTIAL_URLS, ids=[raw for raw, _ in CREDENTIAL_URLS])
def test_credentials_are_refused_without_echoing_them(raw: str, secret: str) -> None:
    with pytest.raises(GitUrlError) as info:
        parse_git_url(raw)
    shown = f"{info.value.message} {info.value.hint}"
    assert secret not in shown
    assert "***" in shown


def test_credential_message_shows_the_masked_url() -> None:
    with pytest.raises(GitUrlError) as info:
        parse_git_url("https://user:hunter2@github.com/o/r")
    assert info.value.message == "git URL https://***@github.com/o/r embeds credentials"
    assert info.value.hint is not None and "credential_name" in info.value.hint


def test_control_characters_are_not_echoed() -> None:
    with pytest.raises(GitUrlError) as info:
        parse_git_url("https://github.com/o/r\x1b[31mred")
    assert "\x1b" not in info.value.message
    assert "position 23" in info.value.message


def test_non_string_is_refused() -> None:
    with pytest.raises(GitUrlError, match="must be a string"):
        parse_git_url(1.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [raw for raw, _ in ACCEPTED])
def test_normalisation_is_a_fixed_point(raw: str) -> None:
    once = parse_git_url(raw)
    assert parse_git_url(once.url) == once


def _check_invariants(got: GitUrl) -> None:
    assert got.scheme in {"https", "ssh", "file", "http"}
    assert not got.url.startswith("-") and not got.host.startswith("-")
    assert "::" not in got.url.replace(f"[{got.host}]", "")
    assert not any(ch.isspace() for ch in got.url)
    assert got.scheme == "ssh" or "@" not in got.url
    assert parse_git_url(got.url) == got


# Fragments that matter to the parser, glued together: finds normalisation corner cases fast.
PIECES = st.lists(
    st.sampled_from(
        [
            "https://",
            "http://",
            "ssh://",
            "git://",
            "file://",
            "git@",
            "github.com",
            "localhost",
            "127.0.0.1",
            "[::1]",
            "[",
            "]",
            ":",
            "::",
            "/",
            "//",
            "@",
            "-",
            "..",
            ".",
            "~",
            "%2F",
            "?",
            "#",
            "o",
            "r.git",
            "22",
        ]
    ),
    max_size=10,
).map("".join)
URLISH = st.text(alphabet=string.ascii_letters + string.digits + ":/@.-_~[]%?#+\\ \x00\n", max_size=60)


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        PIECES,
        URLISH,
        st.text(max_size=60),
        st.from_regex(r"(https?|ssh|git|file)://[a-z.:@\[\]0-9-]{0,20}/[a-z./-]{0,20}"),
    )
)
def test_any_string_is_refused_cleanly_or_accepted_safely(raw: str) -> None:
    try:
        got = parse_git_url(raw)
    except GitUrlError as exc:
        assert exc.message
        return
    _check_invariants(got)


@settings(max_examples=500, deadline=None)
@given(
    user=st.text(alphabet=string.ascii_letters, min_size=1, max_size=8),
    secret=st.text(alphabet=string.ascii_letters + string.digits + "/:@!$&'()*+,;=%-._~", min_size=1, max_size=30),
    scheme=st.sampled_from(["https", "http", "git", "ssh"]),
)
def test_a_password_never_reaches_the_message(user: str, secret: str, scheme: str) -> None:
    canary = f"RNRCANARY{secret}"
    with pytest.raises(GitUrlError) as info:
        parse_git_url(f"{scheme}://{user}:{canary}@github.com/o/r")
    assert "RNRCANARY" not in info.value.message
    assert "RNRCANARY" not in (info.value.hint or "")


def test_redact_url() -> None:
    assert redact_url("https://a:b@h/p") == "https://***@h/p"
    assert redact_url("https://h/p") == "https://h/p"
    assert redact_url("git@h:o/r") == "git@h:o/r"
    assert redact_url("u:p@h:o/r") == "***@h:o/r"
    assert redact_url("https://h/p?private_token=abc#x") == "https://h/p?***"
    assert redact_url("https://h/p#abc") == "https://h/p#***"
    assert len(redact_url("https://h/" + "x" * 500)) == 200


REFS_OK = ["main", "v1.0", "1.10", "feature/x-y_z", "release/2024.06", "abc1234", "a" * 40, "refs/heads/main", "HEAD"]
REFS_BAD: list[tuple[str, str]] = [
    ("", "empty"),
    ("-x", "starts with '-'"),
    ("--upload-pack=touch", "starts with '-'"),
    ("a b", "whitespace"),
    ("a\tb", "whitespace"),
    ("a\x00b", "control"),
    ("a\x7fb", "control"),
    ("main\n", "whitespace"),
    ("a..b", "'..'"),
    ("x@{1}", "'@{'"),
    ("@", "'@' alone"),
    ("a~1", "~ ^ :"),
    ("a^", "~ ^ :"),
    ("a:b", "~ ^ :"),
    ("a?", "~ ^ :"),
    ("a*", "~ ^ :"),
    ("a[", "~ ^ :"),
    ("a\\b", "~ ^ :"),
    ("x/", "empty path component"),
    ("/x", "empty path component"),
    ("a//b", "empty path component"),
    ("x.lock", "'.lock'"),
    ("x.", "ends with '.'"),
    (".hidden", "starts with '.'"),
    ("a/.b", "starts with '.'"),
    ("a" * 256, "longer than 255"),
]


@pytest.mark.parametrize("ref", REFS_OK)
def test_valid_refs_pass_unchanged(ref: str) -> None:
    assert validate_git_ref(ref) == ref


@pytest.mark.parametrize(("ref", "fragment"), REFS_BAD, ids=[repr(r)[:40] for r, _ in REFS_BAD])
def test_invalid_refs_are_refused(ref: str, fragment: str) -> None:
    with pytest.raises(GitUrlError) as info:
        validate_git_ref(ref)
    assert fragment in info.value.message
    assert info.value.hint is not None


def test_ref_must_be_a_string() -> None:
    with pytest.raises(GitUrlError, match="must be a string") as info:
        validate_git_ref(1.1)  # type: ignore[arg-type]
    assert "quote" in (info.value.hint or "")


def test_ref_message_does_not_echo_control_characters() -> None:
    with pytest.raises(GitUrlError) as info:
        validate_git_ref("a\x1b[2Jb")
    assert "\x1b" not in info.value.message
