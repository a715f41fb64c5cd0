"""`hf://` imports: fetch on the host into one shared Hugging Face cache, show the files at the target.

`snapshot_download` fills `RUNNER_HOME/cache/huggingface/hub` (so a second run downloads nothing;
`HF_HUB_OFFLINE=1` is honoured; `HF_ENDPOINT` points at another hub). The run sees the snapshot's
files at its target through a copy-on-write overlay whose lower dir is a tree of hard links to the
cache's blobs — no bytes copied, links that resolve inside the container, and writes that never
reach the shared cache. The token comes from the `HF_TOKEN` secret, else the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runner.engine.events import EventSink, Notice, Progress
from runner.errors import ImportFailedError
from runner.home import RunnerHome
from runner.plan.model import HuggingFaceImport
from runner.secrets import SecretStore

TOKEN_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def hf_token(secrets: SecretStore) -> str | None:
    for name in TOKEN_NAMES:
        value = secrets.read(name) or os.environ.get(name)
        if value:
            return value.strip()
    return None


def prepare_hf_import(step: HuggingFaceImport, home: RunnerHome, secrets: SecretStore,
                      events: EventSink) -> dict[str, Any]:
    snapshot = _download(step, home, secrets, events)
    files = link_snapshot(snapshot, step.view.lower_dir)
    from runner.engine.imports import prepare_view

    prepare_view(step.view)
    return {"target": step.target, "huggingface": f"{step.repo_type}:{step.repo_id}",
            "revision": step.revision or "main", "commit": snapshot.name, "files": files}


def _download(step: HuggingFaceImport, home: RunnerHome, secrets: SecretStore, events: EventSink) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    cache = home.ensure_dir(home.hf_cache_dir / "hub")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    kwargs: dict[str, Any] = {"repo_type": step.repo_type, "revision": step.revision, "cache_dir": str(cache),
                              "token": hf_token(secrets), "tqdm_class": _progress_class(events)}
    try:
        return Path(snapshot_download(step.repo_id, local_files_only=offline, **kwargs))
    except LocalEntryNotFoundError as exc:
        if offline:
            raise ImportFailedError(f"{step.repo_id} is not in the local Hugging Face cache and downloads are off",
                                    hint="unset HF_HUB_OFFLINE, or seed the cache first") from None
        # online, but the hub could not be reached (or answered 5xx) and nothing usable is cached
        raise ImportFailedError(f"could not download {step.repo_id} and it is not in the local cache: "
                                f"{_short(exc)}", hint="check the network and HF_ENDPOINT, or seed the cache first"
                                ) from None
    except (HfHubHTTPError, OSError) as exc:
        if offline:
            raise ImportFailedError(f"could not read {step.repo_id} from the cache: {exc}") from None
        try:  # the hub is unreachable: a complete cached snapshot is still good
            path = Path(snapshot_download(step.repo_id, local_files_only=True, **kwargs))
        except (LocalEntryNotFoundError, OSError):
            raise ImportFailedError(f"could not download {step.repo_id}: {_short(exc)}",
                                    hint="check the name, network/HF_ENDPOINT, and HF_TOKEN for gated models"
                                    ) from None
        events(Notice(f"hub unreachable; using the cached {step.repo_id} ({path.name[:12]})", "warning"))
        return path


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def link_snapshot(snapshot: Path, lower: Path) -> int:
    """Recreate the snapshot's tree under `lower` as hard links to the blobs its symlinks point at."""
    count = 0
    for root, _dirs, files in os.walk(snapshot):
        relative = Path(root).relative_to(snapshot)
        (lower / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            source = Path(root) / name
            target = lower / relative / name
            blob = source.resolve(strict=True)
            if not blob.is_relative_to(snapshot.parent.parent):
                raise ImportFailedError(f"cached file {source} points outside its repository cache")
            if not target.exists():
                os.link(blob, target)
            count += 1
    return count


def _progress_class(events: EventSink) -> Any:
    """A tqdm subclass turning huggingface_hub's progress bars into runner Progress events."""
    from tqdm.auto import tqdm

    class EventTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # no terminal output of its own
            super().__init__(*args, **kwargs)
            self._label = str(kwargs.get("desc") or "download")

        def update(self, n: float | None = 1) -> bool | None:
            self.n += n or 0
            events(Progress("imports", self._label, int(self.n), int(self.total) if self.total else None))
            return None

    return EventTqdm
