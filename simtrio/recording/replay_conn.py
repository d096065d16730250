"""The replay server's connections: sniffing HTTP from WebSocket, plain HTTP answers for the
per-session JSON-RPC endpoint, and the control connection shared by every session's track."""

from __future__ import annotations

__all__: list[str] = []

from typing import Any, Final

import orjson
import trio
import trio_websocket

from simtrio.errors import ProtocolError
from simtrio.wire import backtest_errors, codec, spellings, types

_MAX_HEAD: Final = 64 * 1024
_MAX_RPC_BODY: Final = 64 * 1024 * 1024
_RECEIVE_SIZE: Final = 64 * 1024


class Gone(Exception):
    """The peer closed the connection."""


class ControlConn:
    """The control connection: serialised sends shared by every session's track."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._lock = trio.StrictFIFOLock()

    async def send(self, text: str) -> None:
        async with self._lock:
            try:
                await self._ws.send_message(text)
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError) as exc:
                raise Gone from exc

    async def receive(self) -> str:
        try:
            message = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise Gone from exc
        return message if isinstance(message, str) else message.decode("utf-8", "replace")


class PrefixedStream(trio.abc.Stream):
    """A stream whose first bytes were already read: they are received again first."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return out
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def read_head(stream: trio.SocketStream) -> bytes:
    """Bytes up to the end of the HTTP request head (and whatever came with it)."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
        chunk = await stream.receive_some(_RECEIVE_SIZE)
        if not chunk:
            break
        head += chunk
    return head


def http_response(status: int, body: bytes, content_type: str) -> bytes:
    reason = {200: "OK", 404: "Not Found", 413: "Payload Too Large"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def rpc_reply(request_id: Any, answer: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, **answer})


def decode_request(text: str) -> types.BacktestRequest | types.UnknownRequest:
    try:
        return codec.decode_request(text)
    except ProtocolError as exc:
        return types.UnknownRequest(None, None, str(exc))


def request_name(request: types.BacktestRequest | types.UnknownRequest) -> str:
    if isinstance(request, types.UnknownRequest):
        return request.method or "an unreadable request"
    return spellings.SPELLINGS[type(request)][0] or type(request).__name__


def error_frame(message: str) -> str:
    return codec.encode_response(types.Error(backtest_errors.InvalidRequest(message)))


async def read_http_post(stream: trio.SocketStream, head: bytes) -> tuple[str, bytes] | None:
    """The path and body of the HTTP request whose head (and maybe more) was read.

    None when the peer left before sending the whole body, or after answering a body that is
    too large.
    """
    header, _, body = head.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length > _MAX_RPC_BODY:
        await stream.send_all(http_response(413, b"request body too large", "text/plain"))
        return None
    while len(body) < length:
        chunk = await stream.receive_some(_RECEIVE_SIZE)
        if not chunk:
            return None
        body += chunk
    return path, body[:length]
