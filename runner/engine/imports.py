"""The initializing phase's imports, done on the host before the container exists.

git → a hardened clone through the mirror cache into the run's checkout dir; artifact imports
and exports → the overlay directories (the version itself is only ever read). After cloning,
every step's `workdir` that falls inside a git import is checked, so a moved directory fails
here with a suggestion instead of minutes later inside the container.
"""

from __future__ import annotations

import difflib
import os
import posixpath
from pathlib import Path
from typing import Any

from runner.engine.events import EventSink, Notice
from runner.errors import ImportFailedError
from runner.home import RunnerHome
from runner.manifest.model import CommandStep
from runner.plan.model import ArtifactImport, GitImport, HuggingFaceImport, OverlayView, RunPlan
from runner.secrets import SecretStore

MAX_DIRS_SCANNED = 20_000


def prepare_imports(plan: RunPlan, home: RunnerHome, secrets: SecretStore, events: EventSink,
                    allow_local: bool) -> list[dict[str, Any]]:
    """Run every import step; returns what each produced (commit, version) for the run record."""
    done: list[dict[str, Any]] = []
    for step in plan.imports:
        if isinstance(step, GitImport):
            done.append(_git(step, home, secrets, events, allow_local))
        elif isinstance(step, ArtifactImport):
            prepare_view(step.view)
            done.append({"target": step.target, "artifact": f"{step.kind}:{step.name}", "version": step.version})
        elif isinstance(step, HuggingFaceImport):
            from runner.engine.hf import prepare_hf_import

            done.append(prepare_hf_import(step, home, secrets, events))
    for export in plan.exports:
        prepare_view(export.view)
    check_workdirs(plan)
    return done


def prepare_view(view: OverlayView) -> None:
    """Create the overlay's private dirs (and an empty lower dir when nothing is imported yet)."""
    for directory in (view.upper_dir, view.work_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if not view.lower_dir.exists():
        view.lower_dir.mkdir(parents=True, exist_ok=True)
    # the mount's root takes the upper dir's mode: keep the imported tree's, so users keep their access
    os.chmod(view.upper_dir, view.lower_dir.stat().st_mode & 0o7777)


def _git(step: GitImport, home: RunnerHome, secrets: SecretStore, events: EventSink,
         allow_local: bool) -> dict[str, Any]:
    from runner.sources.git import GitCredential, GitImportRequest, GitMirrorCache

    credential = None
    if step.source.credential_name:
        value = secrets.read(step.source.credential_name)
        if value is None:
            raise ImportFailedError(
                f"git credential {step.source.credential_name!r} is not in the secret store",
                hint=f"store a token: printf %s TOKEN | runner secret set {step.source.credential_name}",
            )
        is_key = value.lstrip().startswith("-----BEGIN")
        credential = GitCredential(token=None if is_key else value.strip(), ssh_private_key=value if is_key else None)
    request = GitImportRequest(url=step.source.url, ref=step.source.ref, credential=credential,
                               submodules=step.source.submodules, allow_local=allow_local)
    cache = GitMirrorCache(home.ensure_dir(home.git_cache_dir))
    step.host_dir.parent.mkdir(parents=True, exist_ok=True)
    checkout = cache.checkout(request, step.host_dir, on_progress=lambda text: events(Notice(text)))
    return {"target": step.target, "git": step.source.url.display, "ref": step.source.ref,
            "commit": checkout.commit, "warm": checkout.warm}


def check_workdirs(plan: RunPlan) -> None:
    """Every step workdir inside a git import must exist in the checkout."""
    if plan.entrypoint is None:
        return
    gits = [step for step in plan.imports if isinstance(step, GitImport)]
    for number, step in enumerate(plan.entrypoint.steps, start=1):
        if not isinstance(step, CommandStep) or not step.workdir:
            continue
        workdir = posixpath.normpath(step.workdir)
        for git in gits:
            if workdir != git.target and not workdir.startswith(git.target + "/"):
                continue
            relative = posixpath.relpath(workdir, git.target)
            if not (git.host_dir / relative).is_dir():
                raise ImportFailedError(
                    f"step {number}: workdir {step.workdir} does not exist in the repository imported at {git.target}",
                    hint=_moved_hint(git, relative),
                )


def _moved_hint(git: GitImport, relative: str) -> str:
    wanted = Path(relative).name
    candidates = []
    for index, (root, dirs, _files) in enumerate(os.walk(git.host_dir)):
        dirs[:] = [d for d in dirs if d != ".git"]
        if index > MAX_DIRS_SCANNED:
            break
        if Path(root).name == wanted and Path(root) != git.host_dir:
            candidates.append(posixpath.join(git.target, os.path.relpath(root, git.host_dir)))
    if candidates:
        best = difflib.get_close_matches(posixpath.join(git.target, relative), candidates, n=1, cutoff=0.0)
        return f"did you mean workdir: {best[0]}? (the repository may have moved it)"
    return "check the workdir against the repository at that ref (a branch like `main` moves)"
