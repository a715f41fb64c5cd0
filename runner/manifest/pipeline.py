"""The manifest layer's one entry point: a file (or stdin) in, a `LoadedManifest` or every problem out.

read (bounded) → render a Jinja2 template if there is one → load (bounded YAML, positions) →
recognise non-Run files → refuse privilege keys → resolve variables/placeholders/secrets →
validate against the schema → build the typed model. Problems from every stage are reported
together, once, sorted by line. Nothing here writes anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.manifest.build import build_manifest
from runner.manifest.envfile import read_env_file
from runner.manifest.load import LoadedDocument, decode_manifest, load_manifest_text, read_manifest_bytes
from runner.manifest.model import Manifest
from runner.manifest.problems import ManifestError, Problem
from runner.manifest.resolve import (
    ResolvedManifest,
    ResolveOptions,
    SecretSource,
    VariableSources,
    resolve_manifest,
)
from runner.manifest.secretbag import SecretBag
from runner.manifest.template import is_template, render_manifest_template
from runner.manifest.validate import foreign_format_problem, privilege_problems, schema_problems

DEFAULT_ENV_FILE = ".env"


@dataclass(frozen=True)
class ManifestRequest:
    path: str  # "-" reads stdin
    env_overrides: Mapping[str, str] = field(default_factory=dict)  # --env K=V
    env_file: str | None = None  # --env-file; None = .env beside the manifest when present
    template_vars: Mapping[str, Any] = field(default_factory=dict)  # --var K=V
    process_env: Mapping[str, str] | None = None  # None = os.environ
    secret_store: SecretSource | None = None
    read_secret_values: bool = False  # only create: the values are needed to deliver them
    strict: bool = False  # unresolved names are errors (create, dry-run) rather than warnings


@dataclass(frozen=True)
class LoadedManifest:
    source: str
    manifest: Manifest
    secrets: SecretBag
    warnings: tuple[Problem, ...]
    document: LoadedDocument  # resolved values (secrets name-only) with their positions

    @property
    def resolved_data(self) -> dict[str, Any]:
        """Values filled in, secrets as names only: safe to store, print and hash."""
        return self.document.data

    def locate(self, problems: list[Problem]) -> list[Problem]:
        """Fill in file positions for problems found after loading (e.g. by the planner)."""
        return [p.located(self.document.position_of(p.path)) for p in problems]


def load_manifest(request: ManifestRequest) -> LoadedManifest:
    source = request.path if request.path != "-" else "<stdin>"
    text = decode_manifest(read_manifest_bytes(request.path), source)
    if is_template(text):
        text = render_manifest_template(text, request.template_vars, source)
    document = load_manifest_text(text, source)
    foreign = foreign_format_problem(document)
    if foreign is not None:
        raise ManifestError(source, [foreign])
    problems = privilege_problems(document)
    resolved = resolve_manifest(document, ResolveOptions(
        variables=_variables(request), secret_store=request.secret_store,
        read_secret_values=request.read_secret_values,
    ))
    problems += resolved.problems
    unresolved = list(resolved.unresolved)
    problems += unresolved if request.strict else [p.as_warning() for p in unresolved]
    # A problem already reported at a path (e.g. an unfilled placeholder) explains a schema problem there,
    # so that one is not repeated; but every schema problem keeps its section away from the builder.
    schema = schema_problems(_as_checked(resolved))
    reported = {p.path for p in problems}
    problems += [p for p in schema if p.path not in reported]
    manifest, model_problems = build_manifest(
        resolved.document, default_name=_default_name(request.path), base_dir=_base_dir(request.path),
        skip_sections=frozenset(str(p.path[0]) for p in schema if p.path),
        unfilled=frozenset(p.path for p in unresolved),
    )
    problems += model_problems
    errors = [p for p in problems if p.is_error]
    if errors or manifest is None:
        raise ManifestError(source, problems)
    return LoadedManifest(source, manifest, resolved.secrets, tuple(p for p in problems if not p.is_error),
                          resolved.document)


def _as_checked(resolved: ResolvedManifest) -> LoadedDocument:
    """What the schema checks: every section resolved, but env as written (ResolvedManifest.env_as_written)."""
    data = resolved.document.data
    if "env" not in data:
        return resolved.document
    return resolved.document.with_data({**data, "env": resolved.env_as_written})


def _variables(request: ManifestRequest) -> VariableSources:
    env_file: Mapping[str, str] = {}
    if request.env_file is not None:
        env_file = read_env_file(Path(request.env_file))
    elif request.path != "-":
        default = Path(request.path).parent / DEFAULT_ENV_FILE
        if default.is_file():
            env_file = read_env_file(default)
    process_env = request.process_env if request.process_env is not None else dict(os.environ)
    return VariableSources(dict(request.env_overrides), env_file, process_env)


def _default_name(path: str) -> str:
    return "run" if path == "-" else Path(path).stem or "run"


def _base_dir(path: str) -> str:
    return str(Path.cwd()) if path == "-" else str(Path(path).resolve().parent)
