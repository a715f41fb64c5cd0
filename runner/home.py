"""Where runner keeps its state on this machine (RUNNER_HOME) and the layout beneath it.

Reading commands (validate, list of an empty home) never create anything here; only
`ensure()` does, and only writers call it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR_MODE = 0o700


def default_home() -> Path:
    """RUNNER_HOME, else the platform data dir ($XDG_DATA_HOME/runner or ~/.local/share/runner)."""
    explicit = os.environ.get("RUNNER_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "runner"


@dataclass(frozen=True)
class RunnerHome:
    """The directory tree under RUNNER_HOME."""

    root: Path

    @classmethod
    def from_env(cls) -> RunnerHome:
        return cls(default_home())

    @property
    def db_path(self) -> Path:
        return self.root / "runner.db"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def git_cache_dir(self) -> Path:
        return self.root / "cache" / "git"

    @property
    def hf_cache_dir(self) -> Path:
        return self.root / "cache" / "huggingface"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def exists(self) -> bool:
        return self.root.is_dir()

    def ensure(self) -> None:
        """Create the root (0700) if missing. Only commands that write call this."""
        self.root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.root, PRIVATE_DIR_MODE)

    def ensure_dir(self, path: Path) -> Path:
        """Create a private directory inside the home (and the home itself)."""
        self.ensure()
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        return path
