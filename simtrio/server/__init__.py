"""The embedded reference server: a deterministic stand-in for the backtest service.

It speaks the control plane, the per-session data plane, the per-session JSON-RPC and the
small HTTP surface of the protocol (§12), over one port, with a synthetic chain, real execution
of the user's transactions on one LiteSVM per session, and optional fault injection, so that
tests and local runs need no external service::

    async with simtrio.server.serve(seed=7) as server:
        ...  # connect to server.url + "/backtest"

It shares :mod:`simtrio.wire` with the clients, and no state machine (only the helpers that
take exception groups apart).
"""

from __future__ import annotations

__all__ = [
    "FaultKind",
    "FaultPlan",
    "Faults",
    "Plane",
    "ReferenceServer",
    "ServerConfig",
    "SessionSnapshot",
    "random_fault_plan",
    "run_server",
    "serve",
]

import functools
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from simtrio.server.config import ServerConfig
from simtrio.server.faults import FaultKind, FaultPlan, Faults, Plane, random_fault_plan
from simtrio.server.http import handle_tcp
from simtrio.server.serving import (
    Listener,
    authority,
    current_listener,
    listen_tcp,
    serving_nursery,
)
from simtrio.server.state import ServerState
from simtrio.wire.urls import CONTROL_PATH

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping

logger = logging.getLogger(__name__)


@attrs.frozen
class SessionSnapshot:
    """A read-only view of one live session, for tests."""

    session_id: str
    control_session_id: str | None
    """The parallel group, for a sub-session."""
    start_slot: int
    end_slot: int
    slot: int
    attached: bool
    running: bool
    completed: bool
    numbered: bool
    last_sequence: int
    subscriptions: int


class ReferenceServer:
    """Handle on a running server (yielded by :func:`serve`)."""

    def __init__(self, state: ServerState, host: str, port: int) -> None:
        self._state = state
        self.host = host
        self.port = port
        host_port = authority(host, port)
        self.url = f"ws://{host_port}"
        """WebSocket base URL; the control plane is at ``url + "/backtest"``."""
        self.control_url = self.url + CONTROL_PATH
        self.http_url = f"http://{host_port}"

    def __repr__(self) -> str:
        return f"<ReferenceServer {self.url}>"

    @property
    def config(self) -> ServerConfig:
        return self._state.config

    @property
    def draining(self) -> bool:
        """While True, ``/ready`` answers 503 and creates are refused (attaches still work)."""
        return self._state.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._state.draining = value

    @property
    def faults(self) -> FaultPlan:
        return self._state.faults

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the fault plan; it applies to connections accepted from now on."""
        self._state.faults = plan

    def restart(self) -> None:
        """Drop every open connection at once (no Close frames); sessions are kept."""
        self._state.restart()

    def connection_count(self, plane: Plane | str) -> int:
        """WebSocket upgrades that reached ``plane`` so far (faulted and refused ones included)."""
        return self._state.connection_count(Plane(plane))

    @property
    def faults_injected(self) -> Mapping[tuple[Plane, FaultKind], int]:
        """Faults that took effect so far, by plane and kind (``delay`` is not counted).

        A planned fault counts once its trigger is reached: the drop, the stall's start, the
        malformed, oversize or corrupted message actually written, or the refused upgrade.
        """
        return dict(self._state.faults_fired)

    @property
    def open_connections(self) -> int:
        """WebSocket connections open now."""
        return len(self._state.conns)

    @property
    def tcp_connections(self) -> int:
        """TCP connections being served now, plain HTTP and WebSocket (``max_connections``)."""
        return self._state.tcp_connections

    @property
    def sessions(self) -> Mapping[str, SessionSnapshot]:
        """Live sessions (single and sub-sessions) by id, as snapshots."""
        out: dict[str, SessionSnapshot] = {}
        for session_id, session in self._state.sessions.items():
            out[session_id] = SessionSnapshot(
                session_id=session_id,
                control_session_id=session.group.id if session.group is not None else None,
                start_slot=session.start_slot,
                end_slot=session.end_slot,
                slot=session.slot,
                attached=session.owner is not None,
                running=session.running,
                completed=session.completed,
                numbered=session.numbered,
                last_sequence=session.log.last_seq,
                subscriptions=len(session.data.subs),
            )
        return out

    @property
    def parallel_sessions(self) -> Mapping[str, tuple[str, ...]]:
        """Live parallel groups: control session id -> sub-session ids."""
        return {gid: tuple(s.id for s in g.subs) for gid, g in self._state.groups.items()}


@asynccontextmanager
async def _running(
    config: ServerConfig, host: str, port: int, listen: Listener
) -> AsyncGenerator[ReferenceServer]:
    """A server accepting connections through ``listen`` for the block, then stopped."""
    state = ServerState(config)
    async with serving_nursery() as nursery:
        await nursery.start(state.run)
        async with listen(functools.partial(handle_tcp, state), host, port) as bound_port:
            server = ReferenceServer(state, host, bound_port)
            logger.info("reference server listening on %s", server.url)
            yield server


async def run_server(
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[ReferenceServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a server until cancelled; ``task_status.started`` gets its :class:`ReferenceServer`."""
    # Always on TCP: this runs in a task of its own, so an in-memory listener's stream opener
    # (set in this task's context) would not reach the clients in the caller's tasks.
    async with _running(config or ServerConfig(), host, port, listen_tcp) as server:
        task_status.started(server)
        await trio.sleep_forever()


@asynccontextmanager
async def serve(
    config: ServerConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **overrides: Any,
) -> AsyncGenerator[ReferenceServer, None]:
    """Run a server for the duration of the block; ``overrides`` replace config fields.

    The server is listening when the block starts; leaving the block closes every connection
    and stops every session task.
    """
    config = attrs.evolve(config or ServerConfig(), **overrides)
    async with _running(config, host, port, current_listener()) as server:
        yield server
