"""The reference server's URL paths: the control plane, and each session's data plane and RPC."""

from __future__ import annotations

__all__: list[str] = []

from typing import Final

from simtrio.wire.urls import CONTROL_PATH

SESSION_PREFIX: Final = CONTROL_PATH + "/"
"""``SESSION_PREFIX + <session id>``: the session's data plane (WebSocket) and RPC (POST)."""


def session_path(session_id: str) -> str:
    """The path of a session's data plane and RPC, as its ``rpc_endpoint`` announces it."""
    return SESSION_PREFIX + session_id
