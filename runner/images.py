"""Getting the image a run needs: use it if present, else pull it with live progress, or build it.

Registry credentials come from the secret store (`image.credential_name`: `user:password` or a
JSON `{"username", "password"}`), else from the user's Docker config, and travel only in the
X-Registry-Auth header of the pull request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from runner.backends.base import EngineNotFound
from runner.backends.docker import DockerBackend, EngineApiError, split_image_ref
from runner.engine.events import EventSink, Progress
from runner.errors import RunFailedError, UsageError
from runner.secrets import SecretStore


class ImagePullError(RunFailedError):
    """The image could not be pulled (not found, no access, no registry)."""


def registry_auth(ref: str, credential_name: str | None, secrets: SecretStore) -> str | None:
    """The X-Registry-Auth header value for pulling `ref`, or None for anonymous pulls."""
    config: dict[str, Any] | None
    if credential_name:
        value = secrets.read(credential_name)
        if value is None:
            raise UsageError(f"image credential {credential_name!r} is not in the secret store",
                             hint=f"store it: printf %s 'USER:PASSWORD' | runner secret set {credential_name}")
        config = _parse_credential(value)
    else:
        config = _docker_config_auth(ref)
    if not config:
        return None
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()


def _parse_credential(value: str) -> dict[str, Any]:
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise UsageError("the image credential is not valid JSON") from None
        return {key: data[key] for key in ("username", "password", "serveraddress", "identitytoken") if key in data}
    username, sep, password = text.partition(":")
    if not sep:
        raise UsageError("an image credential is USER:PASSWORD (or JSON with username and password)")
    return {"username": username, "password": password}


def _docker_config_auth(ref: str) -> dict[str, Any] | None:
    try:
        from docker import auth

        registry, _ = auth.resolve_repository_name(split_image_ref(ref)[0])
        found = auth.resolve_authconfig(auth.load_config(), registry)
    except Exception:  # a broken ~/.docker/config.json must not block an anonymous pull
        return None
    return dict(found) if found else None


def ensure_image(backend: DockerBackend, ref: str, auth: Callable[[], str | None], events: EventSink) -> bool:
    """Make `ref` present locally. Returns True when it had to be pulled.

    `auth` is called only when a pull is needed (reading the Docker config costs a docker-py import).
    """
    if backend.image_present(ref):
        return False
    try:
        for event in backend.pull(ref, auth()):
            if "error" in event:
                detail = event.get("errorDetail", {}).get("message") or event["error"]
                raise ImagePullError(f"could not pull {ref}: {detail}", hint=_pull_hint(str(detail)))
            _report(event, events)
    except (EngineApiError, EngineNotFound) as exc:  # the engine refused: unknown image, no registry, …
        message = exc.engine_message
        raise ImagePullError(f"could not pull {ref}: {message}", hint=_pull_hint(message)) from None
    if not backend.image_present(ref):
        raise ImagePullError(f"the pull of {ref} ended but the image is not present")
    return True


def _report(event: dict[str, Any], events: EventSink) -> None:
    detail = event.get("progressDetail") or {}
    layer = event.get("id")
    if layer and "current" in detail:
        events(Progress("image", str(layer), int(detail["current"]), detail.get("total"), str(event.get("status", ""))))


def _pull_hint(message: str) -> str:
    lowered = message.lower()
    if "not found" in lowered or "manifest unknown" in lowered or "does not exist" in lowered:
        return "check the image name and tag (tags are not checked until pulled)"
    if "unauthorized" in lowered or "denied" in lowered:
        return "the registry wants credentials: set image.credential_name and `runner secret set NAME`"
    return "check that the registry is reachable, or build the image locally (`runner build`)"
