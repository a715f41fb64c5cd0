"""Secret values in memory, kept apart from the manifest model, plus output masking.

The model and everything persisted carry secret *names* only; the values live in a `SecretBag`
from resolution until the engine writes them into the container's `/run/secrets/`. Its repr
never shows a value. `mask_text` hides exact, base64 and URL-encoded forms in text we print.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

MASK = "***"
MIN_MASKED_LENGTH = 4  # masking "a" everywhere would destroy output and reveal nothing


@dataclass(frozen=True)
class SecretBag:
    """Env name → secret value. Only the engine reads values, to deliver them as files."""

    _values: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"SecretBag(names={sorted(self._values)})"

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._values))

    def value(self, name: str) -> str:
        return self._values[name]

    def items(self) -> Iterable[tuple[str, str]]:
        return sorted(self._values.items())

    def masker(self) -> Masker:
        return Masker(self._values.values())


class Masker:
    """Replaces every known secret form in text with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_MASKED_LENGTH:
                continue
            forms.update(_encoded_forms(secret))
        # longest first so a secret that contains another is masked whole
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


def _encoded_forms(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms.add(text)
        forms.add(text.rstrip("="))
    return {form for form in forms if len(form) >= MIN_MASKED_LENGTH}
