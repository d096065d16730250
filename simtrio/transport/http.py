"""A minimal HTTP/1.1 GET over trio (h11), for the management endpoints."""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Final

import h11
import trio

from simtrio.core.boundary import map_exceptions
from simtrio.errors import ConnectError, InvalidParams
from simtrio.transport.endpoint import encode_headers, parse_url
from simtrio.transport.streams import STREAM_ERRORS, open_stream

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

    from simtrio.transport.endpoint import Endpoint

DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
_RECEIVE_SIZE: Final = 64 * 1024
_RESERVED: Final = frozenset({"host", "connection", "content-length", "transfer-encoding"})


async def http_get(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float,  # noqa: ASYNC109 - one bound for the whole exchange
    ssl_context: ssl.SSLContext | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> tuple[int, bytes]:
    """GET ``url`` and return ``(status, body)`` whatever the status.

    Everything that prevents a complete response (bad URL, connect/TLS failure, timeout,
    malformed or oversize response) raises ``ConnectError``; ``fatal`` as for WebSockets.
    """
    try:
        endpoint = parse_url(url, plain="http", secure="https")
        extra = encode_headers(headers, reserved=_RESERVED)
    except InvalidParams as exc:
        raise ConnectError(f"cannot GET: {exc}", fatal=True) from None
    return await _request(endpoint, extra, timeout, ssl_context, max_body, None)


async def http_post_json(
    url: str,
    body: bytes,
    *,
    timeout: float,  # noqa: ASYNC109 - one bound for the whole exchange
    ssl_context: ssl.SSLContext | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> tuple[int, bytes]:
    """POST ``body`` as ``application/json`` to ``url``; errors as for :func:`http_get`."""
    try:
        endpoint = parse_url(url, plain="http", secure="https")
    except InvalidParams as exc:
        raise ConnectError(f"cannot POST: {exc}", fatal=True) from None
    extra = [(b"Content-Type", b"application/json")]
    return await _request(endpoint, extra, timeout, ssl_context, max_body, body)


async def _request(
    endpoint: Endpoint,
    extra: list[tuple[bytes, bytes]],
    timeout: float,  # noqa: ASYNC109 - one bound for the whole exchange
    ssl_context: ssl.SSLContext | None,
    max_body: int,
    body: bytes | None,
) -> tuple[int, bytes]:
    where = endpoint.display
    verb = "GET" if body is None else "POST"
    with (
        map_exceptions(
            trio.TooSlowError,
            lambda _: ConnectError(f"{verb} {where} timed out after {timeout:g} s"),
            chain=False,
        ),
        map_exceptions(
            STREAM_ERRORS,
            lambda exc: ConnectError(f"{verb} {where} failed: {exc or type(exc).__name__}"),
        ),
        map_exceptions(
            h11.RemoteProtocolError,
            lambda exc: ConnectError(f"{verb} {where}: invalid HTTP response: {exc}"),
        ),
        trio.fail_after(timeout),
    ):
        stream = await open_stream(endpoint, ssl_context)
        try:
            return await _exchange(stream, endpoint, extra, max_body, body)
        finally:
            await trio.aclose_forcefully(stream)


async def _exchange(
    stream: trio.abc.Stream,
    endpoint: Endpoint,
    extra: list[tuple[bytes, bytes]],
    max_body: int,
    payload: bytes | None = None,
) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    verb = "GET" if payload is None else "POST"
    headers = [(b"Host", endpoint.host_header.encode("idna")), (b"Connection", b"close"), *extra]
    if payload is not None:
        headers.append((b"Content-Length", str(len(payload)).encode("ascii")))
    request = h11.Request(method=verb, target=endpoint.target, headers=headers)
    out = conn.send(request) or b""
    if payload:
        out += conn.send(h11.Data(data=payload)) or b""
    await stream.send_all(out + (conn.send(h11.EndOfMessage()) or b""))
    status = 0
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(_RECEIVE_SIZE)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            if len(body) + len(event.data) > max_body:
                raise ConnectError(
                    f"{verb} {endpoint.display}: response body exceeds {max_body} bytes"
                )
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):  # pragma: no cover - h11 raises first
            raise ConnectError(f"{verb} {endpoint.display}: connection closed before a response")
