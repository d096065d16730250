"""Loopback serving shared by the reference server and the replay server.

Both bind a port (0 picks a free one), run their connection handlers in a nursery for as long
as the caller's ``async with`` block lasts, and hand an exception from that block back as it
was raised rather than wrapped in an exception group.
"""

from __future__ import annotations

__all__: list[str] = []

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from simtrio.core.groups import unwrapped

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator


def authority(host: str, port: int) -> str:
    """``host:port`` for a URL, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_listeners(host: str, port: int) -> tuple[list[trio.SocketListener], int]:
    """TCP listeners on ``host`` and the port they are bound to (``port`` 0: a free one)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port: int = listeners[0].socket.getsockname()[1]
    return listeners, bound_port


@asynccontextmanager
async def serving_nursery() -> AsyncGenerator[trio.Nursery]:
    """A nursery for a server's tasks, cancelled when the block is left.

    The server's own tasks never raise, so a lone exception in the nursery's group came from
    the block (or from starting the server): it is raised as it was, its context kept.
    """
    with unwrapped():
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            finally:
                nursery.cancel_scope.cancel()
