"""Fill a loaded manifest's variables, placeholders and secret references — values only.

Structure never changes here (templating cannot add keys); string values are interpolated with
the compose grammar, except shell commands (`run`, `image.build.setup`), which the container's
shell expands itself with the run's env — VESSL passes `$MODEL_NAME` through to the shell, and
so do we. Sources, highest first: `--env K=V`, the env file, the process environment; secret
references also fall back to the local secret store.

Secret env entries — `{secret: NAME}`, VESSL placeholders `{NAME}`, `{value: X, secret: true}`,
and plain values whose *name* looks secret (…_TOKEN, …_API_KEY, PASSWORD, …) — leave the data as
name-only references (`{"secret": NAME}` or a redacted inline marker); their values go to the
`SecretBag` and nowhere else. A token pattern written inline in a plain value is refused (exit 4).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner.manifest.interpolate import InterpolationSyntaxError, Unresolved, interpolate
from runner.manifest.load import LoadedDocument
from runner.manifest.problems import JsonPath, Problem, Severity
from runner.manifest.secretbag import SecretBag

REDACTED = "<redacted>"
VOLUME_SECTIONS = ("import", "export", "mount")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TEXT_PLACEHOLDER = re.compile(r"\{(" + _IDENT + r")\}")
_FULL_PLACEHOLDER = re.compile(r"^\s*(?:\{(" + _IDENT + r")\}|<(" + _IDENT + r")>)\s*$")
_ANGLE_PLACEHOLDER = re.compile(r"^\s*<[^<>\n]{1,80}>\s*$")
# Keys of an env reference map; `secret:` with no value is a broken reference, not a `{secret}` placeholder
# (the schema draws the same line).
_ENV_REFERENCE_KEYS = frozenset({"value", "secret", "secret_id", "source", "text"})
_SECRET_NAME = re.compile(
    r"(?i)(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY)(_|$)"
)
TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("an OpenAI-style API key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)


class SecretSource(Protocol):
    """The local secret store as resolution sees it."""

    def has(self, name: str) -> bool: ...

    def read(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class VariableSources:
    """Where `${VAR}` and placeholders get values, highest priority first."""

    overrides: Mapping[str, str] = field(default_factory=dict)  # --env K=V
    env_file: Mapping[str, str] = field(default_factory=dict)  # --env-file / .env beside the manifest
    process_env: Mapping[str, str] = field(default_factory=dict)

    def lookup(self, name: str) -> str | None:
        for source in (self.overrides, self.env_file, self.process_env):
            if name in source:
                return source[name]
        return None


@dataclass(frozen=True)
class ResolveOptions:
    variables: VariableSources = field(default_factory=VariableSources)
    secret_store: SecretSource | None = None
    read_secret_values: bool = False  # only `create` reads values; validate/dry-run check names


@dataclass(frozen=True)
class ResolvedManifest:
    document: LoadedDocument  # same shape as loaded; values interpolated; secrets name-only
    secrets: SecretBag  # empty unless read_secret_values
    secret_env: frozenset[str]  # env names whose values are secret
    problems: tuple[Problem, ...]  # always errors: bad syntax, inline tokens (policy)
    unresolved: tuple[Problem, ...]  # names without a value: errors at create, warnings at validate
    # `env` as written (legacy list form normalised), for the schema: resolution rewrites secret references
    # to name-only forms, which would hide a malformed reference's mistakes. Messages never echo env values.
    env_as_written: Any = None


def looks_secret(env_name: str) -> bool:
    return _SECRET_NAME.search(env_name) is not None


def find_token(text: str) -> str | None:
    """The kind of credential `text` contains, if it matches a known token pattern."""
    for kind, pattern in TOKEN_PATTERNS:
        if pattern.search(text):
            return kind
    return None


def resolve_manifest(document: LoadedDocument, options: ResolveOptions) -> ResolvedManifest:
    document = _legacy_env_as_mapping(document)
    resolver = _Resolver(document, options)
    data = resolver.interpolate_tree(document.data, ())
    data = resolver.fill_volume_placeholders(data)
    data = resolver.resolve_env(data)
    return ResolvedManifest(
        document=document.with_data(data),
        secrets=SecretBag(dict(resolver.secret_values)),
        secret_env=frozenset(resolver.secret_names),
        problems=tuple(resolver.problems),
        unresolved=tuple(resolver.unresolved),
        env_as_written=document.data.get("env"),
    )


def _legacy_env_as_mapping(document: LoadedDocument) -> LoadedDocument:
    """VESSL's old `env: [{key: K, value: V}]` → `env: {K: V}`, positions and source text carried over,
    so both spellings resolve (secrets included), validate and build alike. A list that is not
    exactly that shape (extra keys, repeated names) is left for the schema to explain."""
    env = document.data.get("env")
    if not isinstance(env, list) or not env:
        return document
    if not all(isinstance(item, dict) and isinstance(item.get("key"), str) and set(item) <= {"key", "value"}
               for item in env):
        return document
    names = [item["key"] for item in env]
    if len(set(names)) != len(names):
        return document
    values, keys, texts = dict(document.value_positions), dict(document.key_positions), dict(document.scalar_text)
    for index, name in enumerate(names):
        item_path, value_path, new = ("env", index), ("env", index, "value"), ("env", name)
        value_at = document.value_positions.get(value_path) or document.value_positions.get(item_path)
        key_at = document.value_positions.get(("env", index, "key"))
        if value_at is not None:
            values[new] = value_at
        if key_at is not None:
            keys[new] = key_at
        if value_path in document.scalar_text:
            texts[new] = document.scalar_text[value_path]
    data = {**document.data, "env": {item["key"]: item.get("value") for item in env}}
    return LoadedDocument(document.source, data, values, keys, texts)


def _is_shell_command(path: JsonPath) -> bool:
    if path[:1] == ("run",):
        return len(path) <= 2 or (len(path) == 3 and path[2] == "command")
    return path[:3] == ("image", "build", "setup")


def _as_placeholder(value: Any) -> str | None:
    """`{NAME}` in YAML is the one-key mapping {NAME: null}: return NAME."""
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), = value.items()
        if inner is None and re.fullmatch(_IDENT, key):
            return str(key)
    return None


class _Resolver:
    def __init__(self, document: LoadedDocument, options: ResolveOptions) -> None:
        self.document = document
        self.options = options
        self.problems: list[Problem] = []
        self.unresolved: list[Problem] = []
        self.secret_values: dict[str, str] = {}
        self.secret_names: set[str] = set()

    def _problem(self, path: JsonPath, message: str, hint: str | None = None, *,
                 policy: bool = False, missing_value: bool = False) -> None:
        position = self.document.position_of(path)
        problem = Problem(path, message, hint, Severity.ERROR, position, policy)
        (self.unresolved if missing_value else self.problems).append(problem)

    # -- ${VAR} interpolation ------------------------------------------------------------------
    def interpolate_tree(self, value: Any, path: JsonPath) -> Any:
        if isinstance(value, dict):
            return {key: self.interpolate_tree(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.interpolate_tree(item, (*path, index)) for index, item in enumerate(value)]
        if isinstance(value, str) and "$" in value and not _is_shell_command(path):
            return self._interpolate_string(value, path)
        return value

    def _interpolate_string(self, text: str, path: JsonPath) -> str:
        try:
            result, unresolved = interpolate(text, self.options.variables.lookup)
        except InterpolationSyntaxError as exc:
            self._problem(path, f"invalid interpolation: {exc}",
                          hint="write a literal $ as $$; variables are ${NAME} or ${NAME:-default}")
            return text
        for missing in unresolved:
            self._unresolved_variable(path, missing)
        return result

    def _unresolved_variable(self, path: JsonPath, missing: Unresolved) -> None:
        if missing.message:
            self._problem(path, f"variable {missing.name} is required: {missing.message}", missing_value=True)
            return
        self._problem(
            path, f"variable {missing.name} is not set", missing_value=True,
            hint=f"pass --env {missing.name}=VALUE, add it to .env beside the manifest or export it; "
            f"${{{missing.name}:-default}} gives a default",
        )

    # -- {PLACEHOLDER}s in import / export / mount and image ------------------------------------
    def fill_volume_placeholders(self, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        for section in VOLUME_SECTIONS:
            volumes = out.get(section)
            if isinstance(volumes, dict):
                out[section] = {
                    target: self._fill_source(source, (section, target)) for target, source in volumes.items()
                }
        image = out.get("image")
        if isinstance(image, str):
            out["image"] = self._fill_text(image, ("image",))
        elif isinstance(image, dict):
            out["image"] = {key: self._fill_field(value, ("image", key)) if key in ("url", "credential_name")
                            else value for key, value in image.items()}
        return out

    def _fill_source(self, source: Any, path: JsonPath) -> Any:
        if isinstance(source, str):
            return self._fill_text(source, path)
        if not isinstance(source, dict):
            return source
        out: dict[str, Any] = {}
        for kind, spec in source.items():
            if isinstance(spec, dict):
                out[kind] = {key: self._fill_field(value, (*path, kind, key)) for key, value in spec.items()}
            elif isinstance(spec, str):
                out[kind] = self._fill_text(spec, (*path, kind))
            else:
                out[kind] = spec
        return out

    def _fill_field(self, value: Any, path: JsonPath) -> Any:
        name = _as_placeholder(value)
        if name is not None:
            found = self.options.variables.lookup(name)
            if found is None:
                self._unresolved_placeholder(path, name, secret=False)
                return "{" + name + "}"
            return found
        return self._fill_text(value, path) if isinstance(value, str) else value

    def _fill_text(self, text: str, path: JsonPath) -> str:
        def substitute(match: re.Match[str]) -> str:
            found = self.options.variables.lookup(match.group(1))
            if found is None:
                self._unresolved_placeholder(path, match.group(1), secret=False)
                return match.group(0)
            return found

        return _TEXT_PLACEHOLDER.sub(substitute, text)

    def _unresolved_placeholder(self, path: JsonPath, name: str, *, secret: bool) -> None:
        store_hint = f", or store it: `runner secret set {name}`" if secret else ""
        is_reference = path[-1:] == ("secret",)
        what = f"secret {name} was not found" if is_reference else f"placeholder {{{name}}} has no value"
        self._problem(
            path, what, missing_value=True,
            hint=f"pass --env {name}=VALUE, add it to .env beside the manifest or export it{store_hint}",
        )

    # -- env ------------------------------------------------------------------------------------
    def resolve_env(self, data: dict[str, Any]) -> dict[str, Any]:
        env = data.get("env")
        out = dict(data)
        if isinstance(env, dict):
            out["env"] = {key: self._env_entry(str(key), value, ("env", key)) for key, value in env.items()}
        elif isinstance(env, list):  # legacy: - {key: K, value: V}
            items: list[Any] = []
            for index, item in enumerate(env):
                if isinstance(item, dict) and isinstance(item.get("key"), str):
                    path = ("env", index, "value")
                    item = {**item, "value": self._env_entry(item["key"], item.get("value"), path)}
                items.append(item)
            out["env"] = items
        return out

    def _env_entry(self, name: str, value: Any, path: JsonPath) -> Any:
        placeholder = _as_placeholder(value)
        if placeholder in _ENV_REFERENCE_KEYS:
            placeholder = None
        if placeholder is None and isinstance(value, str):
            match = _FULL_PLACEHOLDER.match(value)
            placeholder = (match.group(1) or match.group(2)) if match else None
            if placeholder is None and _ANGLE_PLACEHOLDER.match(value):
                self._problem(path, f"{value.strip()} looks like a placeholder to fill in", missing_value=True,
                              hint=f"write {name}: {{{name}}} and pass --env {name}=VALUE, or store a secret")
                return value
        if placeholder is not None:
            return self._secret_reference(name, placeholder, path)
        if isinstance(value, dict):
            return self._env_map(name, value, path)
        return self._plain(name, value, path)

    def _env_map(self, name: str, value: dict[str, Any], path: JsonPath) -> Any:
        secret = value.get("secret")
        if isinstance(secret, str) and secret:  # `secret: ''` names nothing; the schema reports it
            return self._secret_reference(name, secret, (*path, "secret"))
        if "secret_id" in value:
            self.secret_names.add(name)
            self._problem((*path, "secret_id"), "secret_id refers to a VESSL secret by number, which runner cannot see",
                          hint=f"store the value with `runner secret set NAME` and write {name}: {{secret: NAME}}",
                          missing_value=True)
            return value
        for key in ("value", "text"):
            inner = _as_placeholder(value.get(key))
            if inner is not None:  # `{value: {WANDB_KEY}, secret: true}`: a placeholder like `NAME: {WANDB_KEY}`
                return self._secret_reference(name, inner, (*path, key))
        if value.get("source") == "inject":
            found = self.options.variables.lookup(name)
            if found is None:
                self._problem(path, f"{name} is injected (source: inject) but no value was given",
                              hint=f"pass --env {name}=VALUE", missing_value=True)
                return value
            return found
        if secret is True and "value" in value:
            self._keep_secret(name, self._text(value["value"], (*path, "value")))
            return {**value, "value": REDACTED}
        if "text" in value and "value" not in value:
            return self._plain(name, value["text"], (*path, "text"))
        if "value" in value:
            plain = self._plain(name, value["value"], (*path, "value"))
            return {**value, "value": plain} if not isinstance(plain, dict) else plain
        return value

    def _plain(self, name: str, value: Any, path: JsonPath) -> Any:
        if isinstance(value, (dict, list)):
            return value  # not a valid env value; the schema reports it
        text = self._text(value, path)
        inline = find_token(self._original_text(path) or "")
        if inline is not None:
            self._problem(
                path, f"{inline} is written inline in the manifest", policy=True,
                hint=f"store it with `runner secret set {name}` and write {name}: {{secret: {name}}}",
            )
            return {"value": REDACTED, "secret": True}
        if looks_secret(name):
            self._keep_secret(name, text)
            return {"value": REDACTED, "secret": True}
        interpolated = find_token(text)
        if interpolated is not None:
            self._problem(
                path, f"{interpolated} would be passed as a plain environment variable", policy=True,
                hint=f"reference it as a secret instead: {name}: {{secret: NAME}}",
            )
            return {"value": REDACTED, "secret": True}
        return value

    def _original_text(self, path: JsonPath) -> str | None:
        node: Any = self.document.data
        for part in path:
            in_dict = isinstance(node, dict) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
            if in_dict or in_list:
                node = node[part]
            else:
                return None
        return node if isinstance(node, str) else None

    def _text(self, value: Any, path: JsonPath) -> str:
        """An env scalar as the user wrote it: `epochs: 5` → "5", `lr: 0.0010` → "0.0010"."""
        if isinstance(value, str):
            return value
        return self.document.scalar_text.get(path, "" if value is None else str(value))

    def _keep_secret(self, name: str, value: str) -> None:
        self.secret_names.add(name)
        if self.options.read_secret_values:
            self.secret_values[name] = value

    def _secret_reference(self, env_name: str, secret_name: str, path: JsonPath) -> dict[str, Any]:
        self.secret_names.add(env_name)
        variables, store = self.options.variables, self.options.secret_store
        if not self.options.read_secret_values:
            if variables.lookup(secret_name) is None and not (store and store.has(secret_name)):
                self._unresolved_placeholder(path, secret_name, secret=True)
            return {"secret": secret_name}
        value = variables.lookup(secret_name)
        if value is None and store is not None:
            value = store.read(secret_name)
        if value is None:
            self._unresolved_placeholder(path, secret_name, secret=True)
        else:
            self.secret_values[env_name] = value
        return {"secret": secret_name}
