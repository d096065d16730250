"""Loopback serving shared by the reference server and the replay server.

Both bind a port (0 picks a free one), run their connection handlers in a nursery for as long
as the caller's ``async with`` block lasts, and hand an exception from that block back as it
was raised rather than wrapped in an exception group.

How the reference server's :func:`~simtrio.server.serve` accepts connections is a *listener*:
:func:`listen_tcp` (TCP listeners on the host and port) unless :func:`serving_with` put
another one in place for the calling task. simtrio's own test suite serves in memory that way,
through the client's stream-opener seam (:mod:`simtrio.transport.streams`), so that a test on
a virtual clock never races a real socket.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeAlias, cast

import trio

from simtrio.core.groups import unwrapped
from simtrio.core.scoped import scoped

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

ConnectionHandler: TypeAlias = Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]
"""Serves one accepted connection, given its byte stream."""

Listener: TypeAlias = Callable[[ConnectionHandler, str, int], AbstractAsyncContextManager[int]]
"""``async with listen(handler, host, port) as bound_port``: ``handler`` serves every
connection to ``host:bound_port`` for the block (``port`` 0: a free one)."""


def authority(host: str, port: int) -> str:
    """``host:port`` for a URL, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_listeners(host: str, port: int) -> tuple[list[trio.SocketListener], int]:
    """TCP listeners on ``host`` and the port they are bound to (``port`` 0: a free one)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port: int = listeners[0].socket.getsockname()[1]
    return listeners, bound_port


@asynccontextmanager
async def listen_tcp(handler: ConnectionHandler, host: str, port: int) -> AsyncGenerator[int]:
    """The default :data:`Listener`: TCP listeners on ``host``, serving until the block ends."""
    listeners, bound_port = await open_listeners(host, port)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        try:
            yield bound_port
        finally:
            nursery.cancel_scope.cancel()


_listener: ContextVar[Listener] = ContextVar("simtrio_server_listener", default=listen_tcp)


def current_listener() -> Listener:
    """The listener :func:`~simtrio.server.serve` would use now."""
    return _listener.get()


def serving_with(listener: Listener) -> AbstractContextManager[None]:
    """Serve every server this task (and the tasks it starts meanwhile) runs with ``listener``."""
    return scoped(_listener, listener)


def abort_stream(stream: trio.abc.Stream) -> None:
    """End ``stream`` at once, without a goodbye: the peer sees the connection go.

    A TCP stream's socket is closed. A stapled stream (the in-memory pairs of ``trio.testing``)
    has each half that can be closed synchronously closed; the peer may have gone already.
    Other streams are left as they are: the server is handed no others.
    """
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()
    elif isinstance(stream, trio.StapledStream):
        stapled = cast("trio.StapledStream[trio.abc.SendStream, trio.abc.ReceiveStream]", stream)
        for half in (stapled.send_stream, stapled.receive_stream):
            close: object = getattr(half, "close", None)
            if callable(close):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    close()


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
