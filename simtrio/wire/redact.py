"""Keeping a known secret (the API key) out of what a server sends back.

A server that echoes the key, in an error message, a log line or anywhere else, must not put it
into an exception, a repr, a log record, an output file or a recording. Every inbound message
passes one :class:`Redactor` before it is decoded, so whatever is built from it afterwards is
clean.

The common case costs one substring search per message: only a message that contains the key
(plainly, or with JSON escapes) takes the slow path, where it is parsed, the key is replaced in
every string (member names included) and the message is written out again. Replacing inside the
JSON structure rather than in the raw text keeps a key that happens to contain a quote or a
backslash from breaking the message. A message that is not JSON gets a plain replacement, so the
error it raises carries no key either.

Keys shorter than :data:`MIN_SECRET_LENGTH` characters are not searched for: they would match
ordinary data (a one-letter key is in nearly every message) and replacing them would corrupt it.
"""

from __future__ import annotations

__all__: list[str] = []

import json
from typing import TYPE_CHECKING, Final, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Iterable

REDACTED: Final = "<redacted>"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH: Final = 6
"""Shorter secrets are not searched for in server text (see the module docstring)."""

_Json: TypeAlias = "bool | int | float | str | list[_Json] | dict[str, _Json] | None"


class Redactor:
    """Replaces known secrets in inbound messages and strings; its repr shows none of them."""

    __slots__ = ("_byte_forms", "_forms")

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            forms.add(secret)
            # The same key as a JSON string body, escaped the two ways servers write it.
            forms.add(json.dumps(secret)[1:-1])
            forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        ordered = sorted(forms, key=len, reverse=True)  # a longer form is replaced first
        self._forms: tuple[str, ...] = tuple(ordered)
        self._byte_forms: tuple[bytes, ...] = tuple(f.encode("utf-8") for f in ordered)

    def __repr__(self) -> str:
        return f"<Redactor secrets={len(self._forms)} forms>"

    def __bool__(self) -> bool:
        return bool(self._forms)

    def message(self, message: str | bytes) -> str | bytes:
        """One inbound message, returned as is unless it contains a secret.

        A JSON message comes back as text with the secret replaced in every string; anything
        else (not JSON, not UTF-8) keeps its type with the secret replaced in place.
        """
        if isinstance(message, str):
            for form in self._forms:
                if form in message:
                    return self._slow(message)
            return message
        for raw in self._byte_forms:
            if raw in message:
                return self._slow(message)
        return message

    def text(self, text: str) -> str:
        """A string (an error message, a log argument) with every secret replaced."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        """Raw bytes (an HTTP body) with every secret replaced."""
        for form in self._byte_forms:
            if form in data:
                data = data.replace(form, REDACTED.encode())
        return data

    def _slow(self, message: str | bytes) -> str | bytes:
        try:
            value: _Json = json.loads(message)
            return json.dumps(self._walk(value), ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            pass
        if isinstance(message, str):
            return self.text(message)
        return self.data(message)

    def _walk(self, value: _Json) -> _Json:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._walk(item) for item in value]
        if isinstance(value, dict):
            return {self.text(k): self._walk(v) for k, v in value.items()}
        return value


def redactor_for(secrets: Iterable[str]) -> Redactor | None:
    """A redactor for ``secrets``, or None when none of them needs one (no cost at all then)."""
    redactor = Redactor(secrets)
    return redactor if redactor else None
