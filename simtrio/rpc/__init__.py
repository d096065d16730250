"""Per-session JSON-RPC: :class:`SessionRpc`, :func:`open_session_rpc` and program injection."""

from __future__ import annotations

__all__ = [
    "DEFAULT_READ_RETRIES",
    "DEFAULT_RPC_TIMEOUT",
    "SessionRpc",
    "SimulationResult",
    "modify_program",
    "open_session_rpc",
]

from simtrio.rpc.programs import modify_program as modify_program
from simtrio.rpc.session import (
    DEFAULT_READ_RETRIES as DEFAULT_READ_RETRIES,
    DEFAULT_RPC_TIMEOUT as DEFAULT_RPC_TIMEOUT,
    SessionRpc as SessionRpc,
    open_session_rpc as open_session_rpc,
)
from simtrio.wire.jsonrpc import SimulationResult as SimulationResult
