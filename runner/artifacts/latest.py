"""The LATEST pointer: read once, moved forward only, always by tmp + fsync + replace + fsync(dir).

Moves happen under the per-artifact flock so that the "only if greater" comparison and the
replace are one step: a slow exporter that finishes after a faster one never moves LATEST back.
"""

from __future__ import annotations

import contextlib
import re
import uuid

from runner import faults
from runner.artifacts.disk import fsync_dir, write_durably
from runner.artifacts.layout import LATEST_TMP_PREFIX, ArtifactLayout, artifact_lock, format_version

_LATEST = re.compile(r"([0-9]{1,9})\n?")


def read_latest(layout: ArtifactLayout) -> int | None:
    """The version LATEST names; None when absent or unreadable (callers fall back and warn)."""
    try:
        text = layout.latest_path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    match = _LATEST.fullmatch(text)
    return int(match.group(1)) if match else None


def advance_latest(layout: ArtifactLayout, number: int) -> bool:
    """Point LATEST at `number` if that moves it forward; True when it moved."""
    with artifact_lock(layout):
        current = read_latest(layout)
        if current is not None and current >= number:
            return False
        write_latest(layout, number)
        return True


def write_latest(layout: ArtifactLayout, number: int | None) -> None:
    """Replace LATEST (or remove it for None). The caller holds the artifact lock."""
    if number is None:
        with contextlib.suppress(FileNotFoundError):
            layout.latest_path.unlink()
        fsync_dir(layout.dir)
        return
    tmp = layout.dir / f"{LATEST_TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        write_durably(tmp, f"{format_version(number)}\n".encode(), mode=0o600)
        faults.checkpoint("before_latest_replace")
        tmp.replace(layout.latest_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(layout.dir)
    faults.checkpoint("after_latest_replace")
