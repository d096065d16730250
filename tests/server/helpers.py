"""Raw clients for driving the reference server in tests (no simtrio client code involved).

WebSocket connections use trio-websocket on a byte stream the test owns, so the connection is
closed even when the server drops it. HTTP goes over a bare trio stream. Every stream comes
from :func:`open_raw`: a TCP connection, or an in-memory one when the server serves in memory
(as it does for tests on the virtual clock; see ``tests/support/inmemory.py``).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio
import trio_websocket
import zstandard

from simtrio.server import ReferenceServer, serve
from simtrio.server.state import ServerState
from simtrio.transport.streams import current_stream_opener

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from simtrio.server.config import ServerConfig

TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATOKEN = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"

RECEIVE_TIMEOUT = 5.0


def create(start: int, end: int, **params: Any) -> str:
    """A ``createBacktestSession`` frame (extra camelCase keys go in as given)."""
    body: dict[str, Any] = {"startSlot": start, "endSlot": end, **params}
    return orjson.dumps({"method": "createBacktestSession", "params": body}).decode()


def cont(count: int, **params: Any) -> str:
    body: dict[str, Any] = {"advanceCount": count, "transactions": [], "modifyAccountStates": {}}
    body.update(params)
    return orjson.dumps({"method": "continue", "params": body}).decode()


def cont_to(slot: int, batch: int | None) -> str:
    return orjson.dumps(
        {"method": "continueTo", "params": {"slot": slot, "batchIndex": batch}}
    ).decode()


def attach(session_id: str, last: int | None) -> str:
    return orjson.dumps(
        {
            "method": "attachBacktestSession",
            "params": {"session_id": session_id, "last_sequence": last},
        }
    ).decode()


def subscribe(
    req_id: int,
    program: str,
    *,
    method: str = "transactionSubscribe",
    compression: bool = False,
    replay: int | None = None,
) -> str:
    config: dict[str, Any] = {}
    if compression:
        config["compression"] = "zstd"
    if replay is not None:
        config["replayFromSlot"] = replay
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": req_id, "method": method, "params": [program, config]}
    ).decode()


def logs_subscribe(req_id: int, address: str, **config: Any) -> str:
    """A ``logsSubscribe`` frame in Solana's shape, with the config a standard client sends."""
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": req_id,
            "method": "logsSubscribe",
            "params": [{"mentions": [address]}, {"commitment": "confirmed", **config}],
        }
    ).decode()


def ack(req_id: int, result: object) -> str:
    """The exact text of a JSON-RPC success reply (a subscription id, ``true`` or ``false``)."""
    return orjson.dumps({"jsonrpc": "2.0", "id": req_id, "result": result}).decode()


def rpc_error(req_id: int | None, code: int, message: str) -> str:
    """The exact text of a JSON-RPC error reply."""
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}
    ).decode()


def unsubscribe(req_id: int, method: str, sub: object) -> str:
    """An unsubscribe request (``transactionUnsubscribe``, ``logsUnsubscribe``, ...)."""
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": req_id, "method": method, "params": [sub]}
    ).decode()


def event(session_id: str, seq: int, inner: str) -> str:
    """The exact text of a ``sessionEventV2`` frame wrapping the canonical ``inner`` event."""
    return (
        '{"method":"sessionEventV2","params":{"session_id":"'
        + session_id
        + '","seq_id":'
        + str(seq)
        + ',"event":'
        + inner
        + "}}"
    )


def numbered(seq: int, inner: str) -> str:
    """``inner`` (canonical, starting with ``{"method"``) with ``seqId`` in front."""
    return '{"seqId":' + str(seq) + "," + inner[1:]


def session_created(session_id: str) -> str:
    return (
        '{"method":"sessionCreated","params":{"session_id":"'
        + session_id
        + '","rpc_endpoint":"/backtest/'
        + session_id
        + '","task_id":null}}'
    )


def session_attached(session_id: str) -> str:
    return session_created(session_id).replace("sessionCreated", "sessionAttached")


STATUS_PREPARING = '{"method":"status","params":{"status":"preparingBundle"}}'
STATUS_READY = '{"method":"status","params":{"status":"bundleReady"}}'
STATUS_DECODED = '{"method":"status","params":{"status":"decodedTransactions"}}'
READY = '{"method":"readyForContinue"}'
SUCCESS = '{"method":"success"}'


def slot(number: int) -> str:
    return '{"method":"slotNotification","params":' + str(number) + "}"


def step(*slots: int) -> tuple[str, ...]:
    """The control frames of one continue step that decodes ``slots``, ending in readiness."""
    return (STATUS_DECODED, *(slot(n) for n in slots), READY)


def numbered_from(seq: int, frames: tuple[str, ...]) -> tuple[str, ...]:
    """``frames`` numbered consecutively from ``seq``."""
    return tuple(numbered(seq + i, frame) for i, frame in enumerate(frames))


class WsClient:
    """A raw WebSocket client with exact-frame helpers."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send_message(text)

    async def recv(self, timeout: float = RECEIVE_TIMEOUT) -> str | bytes:
        with trio.fail_after(timeout):
            return await self.ws.get_message()

    async def recv_text(self, timeout: float = RECEIVE_TIMEOUT) -> str:
        message = await self.recv(timeout)
        assert isinstance(message, str), f"expected Text, got {message!r:.80}"
        return message

    async def recv_binary(self, timeout: float = RECEIVE_TIMEOUT) -> bytes:
        message = await self.recv(timeout)
        assert isinstance(message, bytes), f"expected Binary, got {message!r:.80}"
        return message

    async def recv_json(self) -> Any:
        return orjson.loads(await self.recv_text())

    async def expect(self, *frames: str) -> None:
        for frame in frames:
            assert await self.recv_text() == frame

    async def call(self, request: str, *replies: str) -> None:
        """Send ``request`` and expect exactly ``replies`` as the next Text frames."""
        await self.send(request)
        await self.expect(*replies)

    async def rejected(self, request: str) -> tuple[Any, int]:
        """Send ``request`` and return the id and the error code of the error reply to it."""
        await self.send(request)
        reply = await self.recv_json()
        return reply["id"], reply["error"]["code"]

    async def recv_texts(self, count: int) -> list[str]:
        return [await self.recv_text() for _ in range(count)]

    async def recv_until(self, predicate: Any, limit: int = 10_000) -> list[str]:
        """Text frames up to and including the first one for which ``predicate`` is true."""
        out: list[str] = []
        for _ in range(limit):
            text = await self.recv_text()
            out.append(text)
            if predicate(text):
                return out
        raise AssertionError("predicate never matched")

    async def expect_closed(
        self, timeout: float = RECEIVE_TIMEOUT
    ) -> trio_websocket.CloseReason | None:
        """Wait for the connection to end; fails if a message arrives first."""
        try:
            message = await self.recv(timeout)
        except trio_websocket.ConnectionClosed as exc:
            return exc.reason
        raise AssertionError(f"expected the connection to close, got {message!r:.100}")


async def open_raw(server: ReferenceServer) -> trio.abc.HalfCloseableStream:
    """A raw byte stream to ``server``, reaching it the way simtrio's clients do.

    That is TCP, unless the server serves in memory: then the stream opener its listener put
    in place answers for its port.
    """
    stream = await current_stream_opener()(server.host, server.port)
    assert isinstance(stream, trio.abc.HalfCloseableStream)
    return stream


@asynccontextmanager
async def connect(
    server: ReferenceServer,
    path: str = "/backtest",
    *,
    api_key: str | None = None,
    max_message_size: int = 64 * 1024 * 1024,
) -> AsyncGenerator[WsClient, None]:
    """Open a WebSocket to ``path`` on the server; the connection is always closed on exit."""
    headers = [(b"X-API-Key", api_key.encode())] if api_key is not None else []
    stream = await open_raw(server)
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                f"127.0.0.1:{server.port}",
                path,
                extra_headers=headers,
                max_message_size=max_message_size,
            )
            try:
                yield WsClient(ws)
            finally:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


async def http_raw(server: ReferenceServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes; read the reply until the server closes; parse it loosely."""
    with trio.fail_after(RECEIVE_TIMEOUT):
        stream = await open_raw(server)
        async with stream:
            await stream.send_all(request)
            data = bytearray()
            while chunk := await stream.receive_some(65536):
                data += chunk
    return _parse_reply(bytes(data))


def _parse_reply(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of a raw HTTP reply, parsed loosely."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


async def http(
    server: ReferenceServer,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    all_headers = {"Connection": "close", **(headers or {})}
    lines.extend(f"{k}: {v}" for k, v in all_headers.items())
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return await http_raw(server, request)


async def upgrade_status(
    server: ReferenceServer, path: str, headers: dict[str, str] | None = None
) -> int:
    """Attempt a WebSocket upgrade over raw HTTP and return the status code."""
    all_headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        **(headers or {}),
    }
    status, _, _ = await http_raw_upgrade(server, path, all_headers)
    return status


async def http_raw_upgrade(
    server: ReferenceServer, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send an upgrade request and read just the response head (a 101 keeps the socket open)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with trio.fail_after(RECEIVE_TIMEOUT):
        stream = await open_raw(server)
        async with stream:
            await stream.send_all(request)
            data = bytearray()
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    return _parse_reply(bytes(data))


class ZstdReader:
    """Decodes one connection's Binary messages with python-zstandard, one message at a time."""

    def __init__(self) -> None:
        self._decoder = zstandard.ZstdDecompressor().decompressobj()

    def decode(self, message: bytes) -> str:
        return self._decoder.decompress(message).decode("utf-8")


async def open_session(client: WsClient, create_frame: str) -> str:
    """Create a session and consume its opening frames; returns the session id."""
    await client.send(create_frame)
    created = orjson.loads(await client.recv_text())
    assert created["method"] == "sessionCreated", created
    session_id: str = created["params"]["session_id"]
    await client.recv_until(lambda t: "readyForContinue" in t)
    return session_id


async def wait_until(predicate: Any, timeout: float = RECEIVE_TIMEOUT) -> None:
    """Poll server-side state (via the handle) until ``predicate()`` holds."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - server state has no event to wait on
            await trio.sleep(0.001)


@asynccontextmanager
async def running_state(config: ServerConfig) -> AsyncGenerator[ServerState]:
    """Server state with its session tasks running, for tests that need no listener."""
    state = ServerState(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(state.run)
        yield state
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def session_on(
    config: ServerConfig | None, start: int, end: int, **params: Any
) -> AsyncGenerator[tuple[ReferenceServer, WsClient, str]]:
    """A running server, a control connection and a session on it for ``[start, end]``."""
    async with serve(config) as server, connect(server) as control:
        yield server, control, await open_session(control, create(start, end, **params))


def data_plane(server: ReferenceServer, session_id: str) -> AbstractAsyncContextManager[WsClient]:
    """A data connection to ``session_id``."""
    return connect(server, f"/backtest/{session_id}")


@attrs.frozen
class LiveSession:
    """A session with its control connection and one data connection."""

    server: ReferenceServer
    control: WsClient
    session_id: str
    data: WsClient

    async def subscriptions_reach(self, count: int) -> None:
        """Wait until the server counts ``count`` subscriptions on the session."""
        await wait_until(lambda: self.server.sessions[self.session_id].subscriptions == count)


@asynccontextmanager
async def data_session(
    config: ServerConfig | None, start: int, end: int, *subscriptions: str
) -> AsyncGenerator[LiveSession]:
    """:func:`session_on` plus a data connection on which each of ``subscriptions`` was sent
    and acked, in order, with the next subscription number (1, 2, ...)."""
    async with (
        session_on(config, start, end) as (server, control, session_id),
        data_plane(server, session_id) as data,
    ):
        for number, request in enumerate(subscriptions, start=1):
            await data.call(request, ack(orjson.loads(request)["id"], number))
        yield LiveSession(server, control, session_id, data)


@asynccontextmanager
async def data_after_end(
    config: ServerConfig | None, start: int, end: int
) -> AsyncGenerator[WsClient]:
    """A data connection, opened once its session on ``[start, end]`` has run to ``completed``."""
    async with session_on(config, start, end) as (server, control, session_id):
        await run_to_end(control, end - start + 1)
        async with data_plane(server, session_id) as data:
            yield data


async def run_to_end(control: WsClient, count: int) -> None:
    """Continue the session by ``count`` slots and read its control frames to ``completed``."""
    await control.send(cont(count))
    await control.recv_until(lambda t: "completed" in t)


async def read_until_terminals(
    client: WsClient, subs: set[int], reader: ZstdReader | None = None
) -> list[str]:
    """Data messages (decoded) up to the terminal of every subscription in ``subs``."""
    out: list[str] = []
    pending = set(subs)
    while pending:
        message = await client.recv()
        if reader is not None:
            assert isinstance(message, bytes), f"expected Binary, got {message!r:.80}"
            text = reader.decode(message)
        else:
            assert isinstance(message, str)
            text = message
        out.append(text)
        parsed = orjson.loads(text)
        if parsed.get("method") == "subscriptionComplete":
            pending.discard(parsed["params"]["subscription"])
    return out


async def collect_binary_until_terminals(
    client: WsClient, count: int, out: list[str | bytes]
) -> None:
    """Append Binary messages to ``out`` as they come until ``count`` terminals were among them."""
    reader = ZstdReader()
    terminals = 0
    while terminals < count:
        message = await client.recv_binary()
        out.append(message)
        terminals += "subscriptionComplete" in reader.decode(message)


class FakeConn:
    """Stands in for a connection that reads nothing (its flags are set by the test)."""

    def __init__(self) -> None:
        self.stalled = False
        self.gone = False
