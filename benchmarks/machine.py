"""What the numbers were measured on: machine, engine, toolchain and the runner revision."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path


def _out(argv: Sequence[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() if done.returncode == 0 else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except (OSError, ValueError):
        pass
    return "?"


def _filesystem(path: Path) -> str:
    text = _out(["df", "-T", "-h", str(path)])
    lines = text.splitlines()
    if len(lines) < 2:
        return "?"
    fields = lines[1].split()
    return f"{fields[1]}, {fields[4]} free" if len(fields) >= 5 else "?"


def describe(repo: Path, python: Path, runner: Path, scratch: Path) -> list[tuple[str, str]]:
    """(label, value) pairs for the report header."""
    engine = _out(["docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"])
    drivers = _out(["docker", "info", "--format", "storage {{.Driver}}, logging {{.LoggingDriver}}, "
                    "cgroup {{.CgroupVersion}}"])
    commit = _out(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo)
    dirty = _out(["git", "status", "--porcelain", "--untracked-files=no", "--", "runner"], cwd=repo)
    runner_version = _out([str(runner), "--version"])
    return [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} logical cores"),
        ("Memory", _memory()),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Scratch filesystem", f"{scratch} ({_filesystem(scratch)})"),
        ("Docker engine", f"{engine}; {drivers}"),
        ("Python", f"{_out([str(python), '-c', 'import platform; print(platform.python_version())'])} ({python})"),
        ("git", _out(["git", "--version"]).removeprefix("git version ")),
        ("runner", f"{runner_version} at {commit}" + (" with uncommitted changes in runner/" if dirty else "")),
    ]
