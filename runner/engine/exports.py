"""Publishing a run's exports as new artifact versions, from the overlay upper dirs, at metadata cost.

Unchanged files are hard links to the imported version (which is immutable) and keep its hashes;
only what the run wrote is hashed. A failed export leaves earlier versions intact and is reported
on the run; other exports still happen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.engine.context import Engine
from runner.engine.events import Notice, PhaseFinished, PhaseStarted
from runner.errors import ExportFailedError, RunnerError
from runner.store import RunRecord

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore, VersionHandle


def publish_exports(engine: Engine, record: RunRecord, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(engine.home.ensure_dir(engine.home.artifacts_dir))
    results = []
    for view in views:
        artifact = f"{view['kind']}:{view['name']}"
        engine.events(PhaseStarted("export", f"{view['target']} → {artifact}"))
        result: dict[str, Any] = {"target": view["target"], "artifact": artifact, "version": None, "error": None}
        try:
            lower = _base(store, view)
            published = store.publish_tree(view["kind"], view["name"], lower=lower, upper=Path(view["upper"]),
                                           run_id=record.id)
            result["version"] = published.number
            result["files"] = published.stats.entries
            result["hashed"] = published.stats.hashed
            engine.events(Notice(f"exported {view['target']} as {artifact} version {published.number}"))
        except RunnerError as exc:
            result["error"] = exc.message
            engine.events(Notice(f"export of {view['target']} failed: {exc.message}", "warning"))
        except OSError as exc:
            result["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        engine.events(PhaseFinished("export", 0.0, artifact))
        results.append(result)
    return results



def _base(store: ArtifactStore, view: dict[str, Any]) -> VersionHandle | None:
    """The imported version under the export path; its absence is an error, not an empty base."""
    from runner.artifacts import ArtifactRef

    base = view.get("base")
    if not base:
        return None
    handle = store.resolve(ArtifactRef(base["kind"], base["name"], int(base["version"])))
    if handle is None:
        raise ExportFailedError(f"the imported {base['kind']} {base['name']} version {base['version']} is gone",
                                hint="it was removed while the run used it; the run's changes alone were not published")
    return handle
