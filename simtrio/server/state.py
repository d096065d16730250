"""Server-wide state: the session registry, live connections and counters."""

from __future__ import annotations

__all__: list[str] = []

import collections
import hashlib
import logging
import math
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import trio

from simtrio.server.executor import ChainBudget
from simtrio.server.faults import FaultKind, FaultPlan, Plane

if TYPE_CHECKING:
    from simtrio.server.chain import ChainConfig
    from simtrio.server.config import ServerConfig
    from simtrio.server.conn import Conn
    from simtrio.server.ownership import Ownership
    from simtrio.server.session import ParallelGroup, Session

_Task: TypeAlias = tuple[Callable[..., Awaitable[object]], tuple[object, ...]]
"""A session task handed to :meth:`ServerState.spawn`: the function and its arguments."""

logger = logging.getLogger(__name__)

FD_RESERVE = 32
"""File descriptors kept free of connections: listeners, logs, the run store, the event loop."""


def connection_cap(max_connections: int, fd_limit: int | None) -> int:
    """``max_connections``, lowered to what the process's file-descriptor limit leaves room for.

    Past the descriptor limit ``accept`` fails and nobody is served, not even with a 503.
    """
    if fd_limit is None or fd_limit <= 0:
        return max_connections
    return max(1, min(max_connections, fd_limit - FD_RESERVE))


def _fd_limit() -> int | None:
    if sys.platform == "win32":
        return None
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class ServerState:
    """Shared by every connection handler and session of one running server.

    Sessions live here, not in connections, so they outlive the connection that created them;
    so do their tasks (steps and disconnect timers), which :meth:`run` hosts.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.chain: ChainConfig = config.chain
        self._spawn_tx: trio.MemorySendChannel[_Task] | None = None
        self.faults: FaultPlan = config.faults
        self.draining = config.draining
        self.sessions: dict[str, Session] = {}
        """Sessions reachable by id: single sessions and sub-sessions, until closed or removed."""
        self.groups: dict[str, ParallelGroup] = {}
        self.chain_budget = ChainBudget(config.max_chain_sessions)
        """Bounds the sessions holding a LiteSVM at once (each costs several MiB)."""
        self.conns: set[Conn] = set()
        self.tcp_connections = 0
        """TCP connections being served now (plain HTTP and WebSocket)."""
        self.connection_cap = connection_cap(config.max_connections, _fd_limit())
        """``max_connections``, or less when the file-descriptor limit is lower."""
        self.detached: dict[Ownership, None] = {}
        """Sessions (or parallel groups) waiting for an attach, the longest-detached first."""
        self._ids = 0
        self.ranges_body: bytes | None = None
        """``/available-ranges``, encoded once (the configuration never changes)."""
        self.ranges_lock = trio.Lock()
        self._conn_counts: dict[Plane, int] = {Plane.CONTROL: 0, Plane.DATA: 0}
        self.faults_fired: collections.Counter[tuple[Plane, FaultKind]] = collections.Counter()
        """Faults that took effect, by plane and kind (a planned fault whose trigger was never
        reached is not counted)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the sessions' tasks until cancelled; :meth:`spawn` hands one over.

        The nursery is this service's own: it opens with the server and closes with it,
        cancelling every step and timer still running. Tasks arrive over a channel, unbounded
        because handing one over must never block the step or handler that asks.
        """
        send, receive = trio.open_memory_channel[_Task](math.inf)
        self._spawn_tx = send
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                async for function, args in receive:
                    nursery.start_soon(function, *args)
        finally:
            self._spawn_tx = None

    def spawn(self, function: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``function(*args)`` as a session task (a step or a disconnect timer)."""
        if self._spawn_tx is None:
            raise RuntimeError("the server's session tasks are not running")
        self._spawn_tx.send_nowait((function, args))

    def new_id(self, prefix: str) -> str:
        """``<prefix>_<hex>``: 128 random bits, or with ``deterministic_ids`` 64 bits derived
        from the chain number and a per-server counter."""
        if not self.config.deterministic_ids:
            return f"{prefix}_{secrets.token_hex(16)}"
        self._ids += 1
        digest = hashlib.blake2b(
            f"{self.config.seed}|{prefix}|{self._ids}".encode(), digest_size=8
        ).hexdigest()
        return f"{prefix}_{digest}"

    def session_room(self) -> int:
        """How many more sessions may be created before ``max_sessions`` is reached."""
        return max(self.config.max_sessions - len(self.sessions), 0)

    def note_detached(self, ownership: Ownership) -> None:
        """``ownership`` lost its control connection: keep it, within ``max_detached_sessions``.

        Past the cap, the session (or group) detached longest is removed at once.
        """
        self.detached[ownership] = None
        while len(self.detached) > self.config.max_detached_sessions:
            oldest = next(iter(self.detached))
            logger.info("too many detached sessions; removing the one detached longest")
            oldest.expire_now()

    def forget_detached(self, ownership: Ownership) -> None:
        self.detached.pop(ownership, None)

    def next_connection_index(self, plane: Plane) -> int:
        self._conn_counts[plane] += 1
        return self._conn_counts[plane]

    def fault_fired(self, plane: Plane, kind: FaultKind) -> None:
        self.faults_fired[plane, kind] += 1

    def connection_count(self, plane: Plane) -> int:
        """Upgrades that reached ``plane`` so far (the last index handed out)."""
        return self._conn_counts[plane]

    def add_session(self, session: Session) -> None:
        self.sessions[session.id] = session

    def add_group(self, group: ParallelGroup) -> None:
        self.groups[group.id] = group

    def forget_session(self, session: Session) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            logger.debug("session %s is gone", session.id)

    def forget_group(self, group: ParallelGroup) -> None:
        if self.groups.get(group.id) is group:
            del self.groups[group.id]

    def single(self, session_id: str) -> Session | None:
        session = self.sessions.get(session_id)
        return session if session is not None and session.group is None else None

    def restart(self) -> None:
        """Drop every connection at once, keeping sessions (as a redeploy would)."""
        conns = list(self.conns)
        logger.info("restart: dropping %d connections", len(conns))
        for conn in conns:
            conn.abort()
