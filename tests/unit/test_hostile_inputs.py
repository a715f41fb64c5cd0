"""Hostile manifests through the real CLI (reliability.md §5.10, S1, S2, S5, S6, S13).

Each case runs `.venv/bin/runner` in a subprocess with a fresh RUNNER_HOME that does not exist
beforehand, a secret canary in its environment (referenced by the manifest's env), and
`/usr/bin/time` around it. Every case must: exit with the expected code (2 mistake, 4 policy),
name `FILE:LINE:COL` when the problem has a line, print no traceback and no canary, leave
RUNNER_HOME uncreated and the manifest's directory unchanged, run nothing (marker files stay
absent), and finish in under 1 s of CPU and wall time with a peak RSS under 50 MB.

Timing: a bare `runner validate` costs ~0.2-0.3 s of CPU (interpreter + jsonschema); on a busy
2-CPU machine its wall time alone ranged 0.3-0.8 s, so wall time is retried up to 3 times and
the best attempt counts (a genuinely slow case fails all three). Run with `-s` to see the figures.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RUNNER = Path(sys.executable).with_name("runner")
TIME = shutil.which("time", path="/usr/bin:/bin")
CANARY = "RNRCANARY" + secrets.token_hex(12)
MAX_SECONDS = 1.0
MAX_RSS_KIB = 50 * 1024
MARKER = "PWNED_MARKER"  # replaced by a path in the test's directory; must never be created
WORKDIR, TESTDIR = "WORK_DIR", "TEST_DIR"  # replaced by the manifest's directory and its parent (holds RUNNER_HOME)

BASE = "name: hostile\nresources:\n  preset: cpu-small\nimage: python:3.11\n"  # 4 lines
ENV = BASE + "env:\n  SECRET_CANARY: {secret: SECRET_CANARY}\n"  # 6 lines; the canary is referenced


@dataclass(frozen=True)
class Case:
    text: str | bytes
    exit: int
    message: str  # must appear in the first problem line
    where: str | None = None  # "LINE:COL PATH" of that line; None: the problem has no line
    args: tuple[str, ...] = ()
    command: str = "validate"  # or "dry-run"


def dry(case: Case) -> Case:
    return Case(case.text, case.exit, case.message, case.where, case.args, "dry-run")


BOMB = "".join(['a: &a ["x","x","x","x","x","x","x","x","x"]\n'] + [
    f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)])

CASES: dict[str, Case] = {
    # -- YAML structure abuse --------------------------------------------------------------------
    "empty-file": Case("", 2, "the manifest is empty"),
    "non-mapping-root": Case("- name: x\n- image: y\n", 2, "must be a mapping of keys", "1:1 (root)"),
    "two-documents": Case(BASE + "---\nname: other\n", 2, "expected a single YAML document", "5:1 (root)"),
    "alias-bomb": Case(BOMB, 2, "YAML anchors (&a) are not allowed", "1:4 a"),
    "alias-without-anchor": Case(BASE + "run: *cmd\n", 2, "YAML aliases (*name) are not allowed", "5:6 run"),
    "deep-brackets": Case("run: " + "[" * 20_000, 2, "nests deeper than 64 levels", "1:69 (root)"),
    "two-mib-file": Case(BASE + "description: " + "x" * (2 << 20) + "\n", 2, "the limit is 1048576 bytes"),
    "ten-mib-scalar": Case("a: " + "x" * (10 << 20), 2, "the limit is 1048576 bytes"),
    "node-flood": Case(BASE + "tags: [" + "t," * 3000 + "]\n", 2, "manifest has more than 2000 YAML nodes",
                       "5:3980 (root)"),
    "python-tag": Case(BASE + f"run: !!python/object/apply:os.system ['touch {MARKER}']\n", 2,
                       "YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed", "5:6 run"),
    "custom-tag": Case(BASE + "run: !sh echo\n", 2, "YAML tag '!sh' is not allowed", "5:6 run"),
    "duplicate-key": Case(BASE + "image: other\n", 2, "duplicate key 'image' (first defined at line 4)", "5:1 image"),
    "invalid-utf8": Case(BASE.encode() + b"description: caf\xe9\n", 2, "invalid UTF-8 byte", "5:17 (root)"),
    "nul": Case(BASE + "description: a\x00b\n", 2, "NUL is not allowed", "5:15 (root)"),
    "escape-character": Case(BASE + "description: \x1b[31mred\n", 2, "control character U+001B", "5:14 (root)"),
    "hostile-template": Case(BASE + "description: {{ 'x' * 10**9 }}\n", 2,
                             "template refused: a repetition would exceed the output limit", "5:1 (root)"),
    "template-dunder": Case(BASE + "description: {{ ''.__class__.__mro__ }}\n", 2, "template refused by the sandbox",
                            "5:1 (root)"),
    # -- type coercion -----------------------------------------------------------------------------
    "ref-read-as-number": Case(BASE + "import:\n  /code:\n    git:\n      url: https://github.com/o/r.git\n"
                               "      ref: 1.10\n", 2, "expected a string or a {PLACEHOLDER}, got a number",
                               '9:12 import["/code"].git.ref'),
    "image-read-as-number": Case("name: x\nresources: {}\nimage: 3.10\n", 2, "got a number", "3:8 image"),
    "boolean-as-string": Case(BASE + "termination_protection: 'yes'\n", 2, "expected true or false, got a string",
                              "5:25 termination_protection"),
    # -- unknown or misspelt keys -------------------------------------------------------------------
    "misspelt-top-level-key": Case(BASE + "exprot:\n  /out: vessl-artifact://\n", 2, "unknown key 'exprot'",
                                   "5:1 exprot"),
    "misspelt-nested-key": Case("name: x\nimage: y\nresources:\n  preset: cpu-small\n  gpu: 1\n", 2,
                                "unknown key 'gpu'", "5:3 resources.gpu"),
    # -- out-of-range values and bad names ----------------------------------------------------------
    "port-out-of-range": Case(BASE + "ports:\n  - 70000\n", 2, "70000 is out of range (1–65535)", "6:5 ports[0]"),
    "port-zero": Case(BASE + "ports:\n  - {port: 0}\n", 2, "0 is out of range", "6:12 ports[0].port"),
    "port-as-string": Case(BASE + "ports:\n  - {port: '8000'}\n", 2, "expected an integer, got a string",
                           "6:12 ports[0].port"),
    "port-twice": Case(BASE + "ports:\n  - 8000\n  - 8000\n", 2, "port 8000 is listed twice", "7:5 ports[1]"),
    "port-bad-type": Case(BASE + "ports:\n  - {port: 80, type: https}\n", 2, "'https' is not one of",
                          "6:22 ports[0].type"),
    "env-name-with-dash": Case(ENV + "  MY-VAR: x\n", 2, "invalid name 'MY-VAR'", "7:3 env"),
    "missing-image": Case("name: x\nresources: {}\n", 2, "missing required key 'image'", "1:1 (root)"),
    "gpu-count-negative": Case("name: x\nimage: y\nresources:\n  gpus: -1\n", 2, "out of range",
                               "4:9 resources.gpus"),
    "bad-volume-name": Case(BASE + "import:\n  /v: volume://-bad\n", 2, "volume name '-bad' is not allowed",
                            '6:7 import["/v"]'),
    # -- git URL and ref injection (policy) ---------------------------------------------------------
    "git-ext-transport": Case(BASE + f"import:\n  /code:\n    git:\n      url: 'ext::sh -c touch% {MARKER}'\n", 4,
                              "uses the 'ext::' remote-helper transport", '8:12 import["/code"].git.url'),
    "git-option-as-url": Case(BASE + "import:\n  /code:\n    git:\n      url: '--upload-pack=id'\n", 4,
                              "starts with '-'", '8:12 import["/code"].git.url'),
    "git-option-as-ref": Case(BASE + "import:\n  /code:\n    git:\n      url: https://github.com/o/r.git\n"
                              f"      ref: '--upload-pack=touch {MARKER}'\n", 4,
                              "would be read as an option", '9:12 import["/code"].git.ref'),
    "git-ssh-proxy-command": Case(BASE + "import:\n  /code:\n    git:\n      url: 'ssh://-oProxyCommand=id/x'\n", 4,
                                  "starting with '-'", '8:12 import["/code"].git.url'),
    "git-plain-http": Case(BASE + "import:\n  /code:\n    git:\n      url: http://github.com/o/r.git\n", 4,
                           "uses plain http://", '8:12 import["/code"].git.url'),
    "git-unknown-scheme": Case(BASE + "import:\n  /code:\n    git:\n      url: ftp://example.com/r.git\n", 4,
                               "unsupported scheme 'ftp:'", '8:12 import["/code"].git.url'),
    "git-credentials-in-url": Case(BASE + f"import:\n  /code:\n    git:\n      url: https://me:{CANARY}@github.com"
                                   "/o/r.git\n", 4, "git URL https://***@github.com/o/r.git embeds credentials",
                                   '8:12 import["/code"].git.url'),
    "git-file-url": dry(Case(BASE + "import:\n  /code:\n    git:\n      url: file:///srv/repo\n", 4,
                             "local git source file:///srv/repo is refused by default", '7:5 import["/code"]')),
    "git-local-path": dry(Case(BASE + "import:\n  /code:\n    git:\n      url: /srv/repo\n", 4,
                               "local git source file:///srv/repo is refused by default", '7:5 import["/code"]')),
    # -- path traversal ------------------------------------------------------------------------------
    "target-dotdot": Case(BASE + "import:\n  /../etc: git://github.com/o/r\n", 4, "must not contain '..'",
                          '6:12 import["/../etc"]'),
    "target-proc": Case(BASE + "import:\n  /proc/x: git://github.com/o/r\n", 4, "/proc/x is reserved (under /proc)",
                        '6:12 import["/proc/x"]'),
    "target-run-secrets": Case(BASE + "export:\n  /run/secrets/: vessl-artifact://\n", 4, "is reserved",
                               'export["/run/secrets/"]'.join(("6:18 ", ""))),
    "target-root": Case(BASE + "mount:\n  /: volume://data\n", 4, "cannot import onto /", '6:6 mount["/"]'),
    "artifact-name-dotdot": Case(BASE + "import:\n  /a: vessl-artifact://org/../secrets\n", 4,
                                 "artifact name part '..' is not allowed", '6:7 import["/a"]'),
    "export-name-dotdot": Case(BASE + "export:\n  /out: {artifact: {name: ..}}\n", 4,
                               "artifact name part '..' is not allowed", '6:9 export["/out"]'),
    "hostpath-dotdot": Case(BASE + "mount:\n  /h: hostpath:///data/../etc\n", 4, "must be absolute without '..'",
                            '6:7 mount["/h"]'),
    # -- privilege requests ----------------------------------------------------------------------------
    **{f"privilege-{key}": Case(BASE + f"{key}: {value}\n", 4, "refused by policy", f"5:1 {key}")
       for key, value in [("privileged", "true"), ("network_mode", "host"), ("pid", "host"), ("ipc", "host"),
                          ("cap_add", "[SYS_ADMIN]"), ("devices", "['/dev/kvm']"), ("user", "root")]},
    "privilege-under-resources": Case("name: x\nimage: y\nresources:\n  privileged: true\n", 4, "refused by policy",
                                      "4:3 resources.privileged"),
    **{f"hostpath-{name}": dry(Case(BASE + f"mount:\n  /h: hostpath://{path}\n", 4,
                                    f"mounting host path {path} is refused by policy", '6:7 mount["/h"]'))
       for name, path in [("root", "/"), ("etc", "/etc"), ("docker-sock", "/var/run/docker.sock"), ("var", "/var")]},
    "hostpath-containing-runner-home": dry(Case(BASE + f"mount:\n  /h: hostpath://{TESTDIR}\n", 4,
                                                "is refused by policy: it contains", '6:7 mount["/h"]')),
    "all-interfaces": dry(Case(BASE + "ports:\n  - {port: 8000, host_ip: 0.0.0.0}\n", 4,
                               "publishing port 8000 on 0.0.0.0 is refused by default", "6:27 ports[0].host_ip")),
    # -- secrets -------------------------------------------------------------------------------------
    "inline-hf-token": Case(ENV + f"  MODEL_CFG: hf_{CANARY}abcdefghij\n", 4,
                            "a Hugging Face token is written inline in the manifest", "7:14 env.MODEL_CFG"),
    "inline-openai-key-under-secret-name": Case(ENV + f"  OPENAI_API_KEY: sk-{CANARY}\n", 4,
                                                "an OpenAI-style API key is written inline", "7:19 env.OPENAI_API_KEY"),
    "secret-value-in-bad-field": Case(ENV + f"  HF_TOKEN: {CANARY}\n  W: {{value: {CANARY}, secret: true}}\n"
                                      "ports: [70000]\n", 2, "70000 is out of range", "9:9 ports[0]"),
    "unresolved-at-dry-run": dry(Case(ENV + "  A: {FIRST_MISSING}\n  B: ${SECOND_MISSING}\n"
                                      "  C: {secret: THIRD_MISSING}\n", 2, "placeholder {FIRST_MISSING} has no value",
                                      "7:6 env.A")),
}

# Cases that must pass, run the same way: the refusals above are not just refusing everything.
ACCEPTED: dict[str, Case] = {
    "canary-secret-referenced": Case(ENV + "run: echo $SECRET_CANARY\n", 0, "valid"),
    "canary-secret-at-dry-run": dry(Case(ENV + "run: echo $SECRET_CANARY\n", 0, "SECRET_CANARY=***")),
    "hostpath-allowed-path": dry(Case(BASE + f"mount:\n  /h: hostpath://{WORKDIR}\n", 0, "Plan for batch run")),
    "all-interfaces-with-flag": dry(Case(BASE + "ports:\n  - {port: 8000, host_ip: 0.0.0.0}\n", 0,
                                         "0.0.0.0", args=("--publish-all-interfaces",))),
    "artifact-import-at-dry-run": dry(Case(BASE + "import:\n  /cache: artifact://hf-cache\n", 0,
                                           "does not exist yet")),
    "file-url-with-flag": dry(Case(BASE + "import:\n  /code:\n    git:\n      url: file:///srv/repo\n", 0,
                                   "file:///srv/repo", args=("--allow-local-sources",))),
}


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    rss_kib: int


def run_cli(tmp_path: Path, case: Case, manifest: Path, home: Path, attempt: int) -> Outcome:
    timing = tmp_path / f"time-{attempt}.txt"
    command = ["create", "--dry-run"] if case.command == "dry-run" else ["validate"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "RUNNER_HOME": str(home),
           "SECRET_CANARY": CANARY}
    started = time.perf_counter()
    result = subprocess.run([TIME, "-f", "%U %S %M", "-o", str(timing), str(RUNNER), *command, "-f", str(manifest),
                             *case.args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
                            check=False)
    wall = time.perf_counter() - started
    user, system, rss = timing.read_text().split()[-3:]
    return Outcome(result.returncode, result.stdout, result.stderr, wall, float(user) + float(system), int(rss))


def check(tmp_path: Path, name: str, case: Case) -> None:
    assert TIME is not None, "/usr/bin/time is needed to measure peak RSS"
    workdir = tmp_path / "work"
    workdir.mkdir()
    marker = tmp_path / "pwned"
    manifest = workdir / "hostile.yaml"
    text = case.text
    if isinstance(text, str):
        text = text.replace(MARKER, str(marker)).replace(WORKDIR, str(workdir)).replace(TESTDIR, str(tmp_path))
    manifest.write_bytes(text.encode() if isinstance(text, str) else text)
    home = tmp_path / "runner-home"
    attempts = [run_cli(tmp_path, case, manifest, home, n) for n in range(1)]
    while min(a.wall_s for a in attempts) >= MAX_SECONDS and len(attempts) < 3:
        attempts.append(run_cli(tmp_path, case, manifest, home, len(attempts)))
    outcome = min(attempts, key=lambda a: a.wall_s)
    print(f"\n{name}: exit {outcome.code}, wall {outcome.wall_s:.2f}s (of {len(attempts)}), "
          f"cpu {outcome.cpu_s:.2f}s, rss {outcome.rss_kib / 1024:.1f} MB")
    output = outcome.stdout + outcome.stderr

    assert outcome.code == case.exit, output[:2000]
    assert "Traceback" not in output
    assert "internal error" not in output
    assert CANARY not in output
    assert not home.exists(), "RUNNER_HOME was created"
    assert sorted(p.name for p in workdir.iterdir()) == ["hostile.yaml"]
    assert not marker.exists(), "a command in the manifest was executed"
    assert outcome.cpu_s < MAX_SECONDS, f"cpu {outcome.cpu_s:.2f}s"
    assert outcome.wall_s < MAX_SECONDS, f"wall {outcome.wall_s:.2f}s in each of {len(attempts)} attempts"
    assert outcome.rss_kib < MAX_RSS_KIB, f"peak RSS {outcome.rss_kib} KiB"
    if case.exit == 0:
        assert case.message in output
        return
    lines = outcome.stderr.splitlines()
    assert lines[0].startswith(f"error: {manifest}: "), lines[0]
    first = lines[1]
    if case.where is None:
        assert first.startswith(f"{manifest}: (root): "), first
    else:
        position, path = case.where.split(" ", 1)
        assert first.startswith(f"{manifest}:{position}: {path}: "), first
    assert case.message in first, first


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_refused_cleanly(tmp_path: Path, name: str) -> None:
    check(tmp_path, name, CASES[name])


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_legitimate_neighbours_are_accepted_cleanly(tmp_path: Path, name: str) -> None:
    check(tmp_path, name, ACCEPTED[name])


def test_every_category_is_covered() -> None:
    prefixes = {"privilege", "hostpath", "git", "target", "port", "inline", "template", "unresolved", "alias",
                "two-mib", "deep", "duplicate", "invalid-utf8", "misspelt", "ref-read", "artifact-name"}
    assert all(any(name.startswith(prefix) for name in CASES) for prefix in prefixes)
    assert len({case.exit for case in CASES.values()}) == 2


def test_unresolved_names_are_all_listed_at_dry_run(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(CASES["unresolved-at-dry-run"].text)  # type: ignore[arg-type]
    env = {**os.environ, "RUNNER_HOME": str(tmp_path / "home"), "SECRET_CANARY": CANARY}
    result = subprocess.run([str(RUNNER), "create", "--dry-run", "-f", str(manifest)], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2
    problems = [line.split(": ", 2)[1:] for line in result.stderr.splitlines()[1:] if not line.startswith("    ")]
    assert problems == [["env.A", "placeholder {FIRST_MISSING} has no value"],
                        ["env.B", "variable SECOND_MISSING is not set"],
                        ["env.C.secret", "secret THIRD_MISSING was not found"]]
    assert result.stderr.splitlines()[0] == f"error: {manifest}: 3 problems found"
