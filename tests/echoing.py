"""Turn the reference server into one that echoes a key back in what it sends.

Every outbound message of every connection (control and data plane, compressed or not) gets the
key planted where a careless server would put it: a line added to each transaction's
``logMessages``, and appended to every ``error``/``message`` string. Identifiers are left
alone, so a client still works against it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from simtrio.server.conn import Conn

if TYPE_CHECKING:
    import pytest


def plant(text: str, key: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(_walk(value, key))


def _walk(value: Any, key: str) -> Any:
    if isinstance(value, list):
        return [_walk(item, key) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name == "logMessages" and isinstance(item, list):
            out[name] = [*item, f"Program log: echo {key}"]
        elif name in ("error", "message") and isinstance(item, str):
            out[name] = f"{item} (key {key})"
        else:
            out[name] = _walk(item, key)
    return out


def echo_key(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """Patch the reference server (for the test's duration) to plant ``key`` in its output."""
    send = Conn._send  # pyright: ignore[reportPrivateUsage]

    async def echoing(self: Conn, text: str, *, compressed: bool) -> None:
        await send(self, plant(text, key), compressed=compressed)

    monkeypatch.setattr(Conn, "_send", echoing)
