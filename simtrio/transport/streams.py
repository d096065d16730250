"""Opening the byte stream under a connection: TCP plus TLS, or whatever a test puts there.

:func:`open_stream` asks the current *stream opener* for a stream to ``(host, port)``; that is
``trio.open_tcp_stream`` unless :func:`stream_opener` installed another one for the calling
task and the tasks it starts (tests run the client over in-memory streams that way, so a
virtual clock never races a real socket). TLS, when the endpoint is secure, goes on top of
whatever stream the opener returned. Every failure is a :class:`~simtrio.errors.ConnectError`.
"""

from __future__ import annotations

__all__: list[str] = []

import socket
import ssl
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import trio

from simtrio.core.boundary import map_exceptions
from simtrio.errors import ConnectError, excerpt
from simtrio.transport.boundary import reason

if TYPE_CHECKING:
    from collections.abc import Generator

    from simtrio.transport.endpoint import Endpoint

STREAM_ERRORS: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
"""What a broken or closed byte stream raises."""

StreamOpener: TypeAlias = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""``await opener(host, port)``: a connected byte stream; OS errors as ``open_tcp_stream``'s."""


async def _open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


_opener: ContextVar[StreamOpener] = ContextVar("simtrio_stream_opener", default=_open_tcp)

_TRANSIENT_DNS: Final = frozenset(
    code
    for code in (getattr(socket, "EAI_AGAIN", None), getattr(socket, "EAI_SYSTEM", None))
    if code is not None
)
"""Resolver failures that may clear by themselves (no answer yet); all others are final."""


def current_stream_opener() -> StreamOpener:
    """The opener :func:`open_stream` would use now (to fall back on from another one)."""
    return _opener.get()


@contextmanager
def stream_opener(opener: StreamOpener) -> Generator[None]:
    """Open every stream of this task (and of tasks it starts meanwhile) with ``opener``."""
    token = _opener.set(opener)
    try:
        yield
    finally:
        _opener.reset(token)


async def open_stream(endpoint: Endpoint, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """A stream to ``endpoint``, plus TLS for a secure one; failures become ``ConnectError``.

    A host name that does not resolve and a TLS handshake the peer cannot complete (a
    certificate that does not verify, a plain-text server on the port) are ``fatal``: retrying
    will not change them. A refused or reset connection, an unreachable network and a resolver
    that could not answer yet are transient.
    """
    where = endpoint.display
    with map_exceptions(OSError, lambda exc: _tcp_failure(exc, endpoint)):
        stream = await _opener.get()(endpoint.host, endpoint.port)
    if not endpoint.secure:
        return stream
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    tls = trio.SSLStream(stream, context, server_hostname=endpoint.host, https_compatible=True)
    try:
        with map_exceptions(trio.BrokenResourceError, lambda exc: _tls_failure(exc, where)):
            await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


def _tcp_failure(exc: BaseException, endpoint: Endpoint) -> ConnectError:
    """Why a TCP connect failed, in words: trio reports "all attempts failed" over a group."""
    where = endpoint.display
    if isinstance(exc, socket.gaierror):
        return ConnectError(
            f"cannot resolve host {excerpt(endpoint.host)!r} of {where}: {exc.strerror or exc}",
            fatal=exc.errno not in _TRANSIENT_DNS,
        )
    causes: list[BaseException] = [exc]
    group = exc.__cause__
    if isinstance(group, BaseExceptionGroup):
        causes = list(cast("BaseExceptionGroup[BaseException]", group).exceptions)
    if causes and all(isinstance(cause, ConnectionRefusedError) for cause in causes):
        why = "connection refused (is the server running on that port?)"
    else:
        why = "; ".join(sorted({reason(cause) for cause in causes}))
    return ConnectError(f"cannot connect to {where}: {why}")


def _tls_failure(exc: BaseException, where: str) -> ConnectError:
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return ConnectError(
            f"TLS certificate verification failed for {where}: {cause.verify_message}",
            fatal=True,
        )
    if isinstance(cause, ssl.SSLError) and not isinstance(
        cause, ssl.SSLEOFError | ssl.SSLZeroReturnError
    ):
        # The peer answered, but not with TLS we can use (a plain ws:// server on this port,
        # an unsupported protocol version): the same on every retry.
        return ConnectError(
            f"TLS handshake with {where} failed: {_ssl_reason(cause)}"
            " (does the server speak TLS on this port? ws:// is the plain-text scheme)",
            fatal=True,
        )
    return ConnectError(f"TLS handshake with {where} failed: {cause or exc}")


def _ssl_reason(exc: ssl.SSLError) -> str:
    why: str | None = exc.reason
    return why.replace("_", " ").lower() if why else str(exc)
