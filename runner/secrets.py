"""The local secret store: one 0600 file per secret under RUNNER_HOME/secrets (a 0700 dir).

This is the only place on the host where runner keeps secret values. Names are listed, values
are never printed. Writes are atomic (process-unique temp file, fsync, rename) so a crash never
leaves a half-written secret. Reading commands never create the directory.
"""

from __future__ import annotations

import os
import re
import secrets as _random
from dataclasses import dataclass
from pathlib import Path

from runner.errors import NotFoundError, UsageError
from runner.home import PRIVATE_DIR_MODE, RunnerHome

MAX_SECRET_BYTES = 64 * 1024
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class SecretInfo:
    name: str
    updated: float  # mtime, seconds since the epoch
    size: int


def check_secret_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"invalid secret name {name!r}",
            hint="use letters, digits, '_', '.' and '-', starting with a letter or '_' (e.g. HF_TOKEN)",
        )
    return name


class SecretStore:
    """Secrets by name. Satisfies the manifest layer's `SecretSource` protocol."""

    def __init__(self, home: RunnerHome) -> None:
        self._home = home
        self._dir = home.secrets_dir

    def _path(self, name: str) -> Path:
        return self._dir / check_secret_name(name)

    def has(self, name: str) -> bool:
        return _NAME.match(name) is not None and self._path(name).is_file()

    def read(self, name: str) -> str | None:
        if _NAME.match(name) is None:
            return None
        try:
            return self._path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def set(self, name: str, value: str) -> None:
        check_secret_name(name)
        data = value.encode("utf-8")
        if len(data) > MAX_SECRET_BYTES:
            raise UsageError(f"secret is larger than {MAX_SECRET_BYTES} bytes")
        if not data:
            raise UsageError("refusing to store an empty secret", hint="pipe the value on stdin")
        self._home.ensure_dir(self._dir)
        os.chmod(self._dir, PRIVATE_DIR_MODE)
        tmp = self._dir / f".{name}.{os.getpid()}.{_random.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path(name))
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def path(self, name: str) -> Path:
        """Where NAME's value lives (for `$(cat …)` in scripts); the value itself is never printed."""
        path = self._path(name)
        if not path.is_file():
            raise NotFoundError(f"no secret named {name!r}",
                                hint=f"store it: printf %s VALUE | runner secret set {name}")
        return path

    def remove(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise NotFoundError(f"no secret named {name!r}", hint="see `runner secret list`") from None

    def list(self) -> list[SecretInfo]:
        if not self._dir.is_dir():
            return []
        infos = []
        for entry in sorted(self._dir.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            stat = entry.stat()
            infos.append(SecretInfo(entry.name, stat.st_mtime, stat.st_size))
        return infos
