"""Plain HTTP connections carry several requests (HTTP/1.1 keep-alive), within bounds."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import h11
import orjson
import trio

from simtrio.server import serve

from .helpers import open_raw, session_on

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simtrio.server import ReferenceServer


class _Client:
    """A raw HTTP/1.1 client on one connection, parsing answers with h11."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = h11.Connection(h11.CLIENT)

    async def send(self, method: str, path: str, body: bytes = b"", close: bool = False) -> None:
        headers = [("host", "127.0.0.1"), ("content-length", str(len(body)))]
        if close:
            headers.append(("connection", "close"))
        request = h11.Request(method=method, target=path, headers=headers)
        data = self.parser.send(request) + self.parser.send(h11.Data(data=body))
        await self.stream.send_all(data + self.parser.send(h11.EndOfMessage()))

    async def receive(self) -> tuple[int, dict[str, str], bytes]:
        status = 0
        headers: dict[str, str] = {}
        body = bytearray()
        while True:
            event = self.parser.next_event()
            if event is h11.NEED_DATA:
                self.parser.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.parser.our_state is h11.DONE and self.parser.their_state is h11.DONE:
                    self.parser.start_next_cycle()
                return status, headers, bytes(body)

    async def closed_by_server(self) -> bool:
        return await self.stream.receive_some(1) == b""

    async def read_to_close(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        data = bytearray()
        while chunk := await self.stream.receive_some(65536):
            data += chunk
        return bytes(data)


@asynccontextmanager
async def _open_client(server: ReferenceServer) -> AsyncIterator[_Client]:
    """A raw HTTP client on a new connection to ``server``, closed on the way out."""
    stream = await open_raw(server)
    async with stream:
        yield _Client(stream)


async def test_one_connection_carries_several_requests() -> None:
    with trio.fail_after(10):
        async with (
            session_on(None, 4000, 4010) as (server, _control, session_id),
            _open_client(server) as client,
        ):
            rpc = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "getSlot"})
            for _ in range(3):
                await client.send("POST", f"/backtest/{session_id}", rpc)
                status, headers, body = await client.receive()
                assert (status, orjson.loads(body)["result"]) == (200, 4000)
                assert "connection" not in headers
            await client.send("GET", "/nope")
            assert (await client.receive())[::2] == (404, b"not found")
            assert server.tcp_connections == 2
            # The peer asks to close: the answer says so and the server closes.
            await client.send("GET", "/ready", close=True)
            status, headers, body = await client.receive()
            assert (status, body, headers["connection"]) == (200, b"ready", "close")
            assert await client.closed_by_server()


async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(10):
        async with serve() as server, _open_client(server) as client:
            await client.stream.send_all(
                b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            data = await client.read_to_close()
    assert re.findall(rb"HTTP/1.1 (\d+) ", data) == [b"200", b"404", b"200"]
    assert data.endswith(b"ready")


async def test_a_connection_carries_at_most_http_max_requests() -> None:
    with trio.fail_after(10):
        async with serve(http_max_requests=2) as server, _open_client(server) as client:
            await client.send("GET", "/health")
            assert "connection" not in (await client.receive())[1]
            await client.send("GET", "/health")
            status, headers, _ = await client.receive()
            assert (status, headers["connection"]) == (200, "close")
            assert await client.closed_by_server()


async def test_an_idle_kept_alive_connection_is_closed(autojump_clock: trio.abc.Clock) -> None:
    async with (
        serve(http_idle_timeout=7, handshake_timeout=3) as server,
        _open_client(server) as client,
    ):
        await client.send("GET", "/health")
        await client.receive()
        answered = trio.current_time()
        with trio.fail_after(60):
            assert await client.closed_by_server()
        assert trio.current_time() - answered >= 7


async def test_the_next_head_still_has_the_handshake_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        serve(http_idle_timeout=7, handshake_timeout=3) as server,
        _open_client(server) as client,
    ):
        await client.send("GET", "/health")
        await client.receive()
        await trio.sleep(5)
        await client.stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = trio.current_time()
        with trio.fail_after(60):
            assert await client.closed_by_server()
        assert 3 <= trio.current_time() - started < 7


async def test_an_upgrade_after_a_plain_request_is_refused() -> None:
    with trio.fail_after(10):
        async with serve() as server, _open_client(server) as client:
            await client.send("GET", "/health")
            await client.receive()
            await client.stream.send_all(
                b"GET /backtest HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            data = await client.read_to_close()
            assert data.startswith(b"HTTP/1.1 400 ")
