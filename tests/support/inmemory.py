"""Serving test peers and reference servers in memory, on a reserved port of 127.0.0.1.

:func:`serve_streams` runs a connection handler for every connection simtrio's client opens to
the port it yields, over ``trio.testing.memory_stream_pair``, through the client's
stream-opener seam (:mod:`simtrio.transport.streams`). :func:`reference_servers_in_memory`
puts it under the reference server (:func:`simtrio.server.serve`) through the server's
listener seam (:mod:`simtrio.server.serving`). The suite's ``conftest`` does that for every
test on the virtual clock, so no timeout there fires only because the kernel had not yet
delivered some bytes.
"""

from __future__ import annotations

__all__ = ["LOCAL_HOSTS", "memory_listener", "reference_servers_in_memory", "serve_streams"]

import socket
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from functools import partial
from typing import TYPE_CHECKING

import trio
import trio.testing

from simtrio.server.serving import ConnectionHandler, serving_with
from simtrio.transport.streams import current_stream_opener, stream_opener

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
"""The host names a reserved port answers for in memory."""


@asynccontextmanager
async def serve_streams(handler: ConnectionHandler, *, tcp: bool = False) -> AsyncGenerator[int]:
    """Run ``handler`` for every connection to the yielded port of 127.0.0.1.

    In memory (the default), simtrio's connections to 127.0.0.1 or localhost on that port reach
    ``handler`` over ``memory_stream_pair``; the port is reserved for the block (bound, never
    listening), so no other test server gets it, and connections elsewhere go where they went
    before. With ``tcp=True`` it is a real listening socket. Leaving the block cancels whatever
    still runs.
    """
    async with trio.open_nursery() as nursery:
        if tcp:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            try:
                yield listeners[0].socket.getsockname()[1]
            finally:
                nursery.cancel_scope.cancel()
            return
        fallback = current_stream_opener()
        with socket.socket() as reserved:
            reserved.bind(("127.0.0.1", 0))
            reserved_port: int = reserved.getsockname()[1]

            async def opener(host: str, port: int) -> trio.abc.Stream:
                if port != reserved_port or host not in LOCAL_HOSTS:
                    return await fallback(host, port)
                client_end, server_end = trio.testing.memory_stream_pair()
                nursery.start_soon(handler, server_end)
                return client_end

            with stream_opener(opener):
                try:
                    yield reserved_port
                finally:
                    nursery.cancel_scope.cancel()


def memory_listener(
    handler: ConnectionHandler, host: str, port: int
) -> AbstractAsyncContextManager[int]:
    """A server listener (:data:`simtrio.server.serving.Listener`) serving in memory.

    The server's ``host`` must be one a reserved port answers for; ``port`` must be 0 (a
    reserved port is picked).
    """
    if host not in LOCAL_HOSTS or port != 0:
        raise ValueError(f"in memory a server runs on 127.0.0.1, port 0; got {host}:{port}")
    return serve_streams(handler)


@contextmanager
def reference_servers_in_memory() -> Generator[None]:
    """Serve every reference server started meanwhile (:func:`simtrio.server.serve`) in memory.

    The server's URLs stay valid ``127.0.0.1`` URLs: simtrio's clients reach it through the
    stream-opener seam, and :func:`tests.server.helpers.open_raw` does for raw ones.
    """
    with serving_with(memory_listener):
        yield
