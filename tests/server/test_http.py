"""The HTTP surface: management routes, per-session JSON-RPC, upgrade routing and the API key."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio_websocket

from simtrio.server import ReferenceServer, serve
from simtrio.wire.codec import decode_available_ranges

from .helpers import ack, connect, create, http, open_raw, open_session, rpc_error, upgrade_status


async def test_health_ready_and_draining() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            assert await http(server, "GET", "/health") == (
                200,
                {"content-type": "text/plain", "content-length": "2", "connection": "close"},
                b"ok",
            )
            status, _, _ = await http(server, "GET", "/ready")
            assert status == 200
            server.draining = True
            status, _, body = await http(server, "GET", "/ready")
            assert (status, body) == (503, b"draining")
            server.draining = False
            assert (await http(server, "GET", "/ready"))[0] == 200


async def test_available_ranges_in_camel_case() -> None:
    with trio.fail_after(5):
        async with serve(window_start=4000, window_end=4199) as server:
            status, headers, body = await http(server, "GET", "/available-ranges")
            assert status == 200
            assert headers["content-type"] == "application/json"
            assert body == (
                b'[{"snapshotSlot":3999,"snapshotSlotUtc":"2026-01-05T09:59:59Z",'
                b'"bundleStartSlot":4000,"bundleStartSlotUtc":"2026-01-05T10:00:00Z",'
                b'"maxBundleEndSlot":4099,"maxBundleEndSlotUtc":"2026-01-05T10:00:39Z"},'
                b'{"snapshotSlot":4099,"snapshotSlotUtc":"2026-01-05T10:00:39Z",'
                b'"bundleStartSlot":4100,"bundleStartSlotUtc":"2026-01-05T10:00:40Z",'
                b'"maxBundleEndSlot":4199,"maxBundleEndSlotUtc":"2026-01-05T10:01:19Z"}]'
            )
            assert [r.bundle_start_slot for r in decode_available_ranges(body)] == [4000, 4100]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/nope"),
        ("POST", "/health"),
        ("GET", "/backtest"),
        ("GET", "/backtest/x"),
    ],
)
async def test_anything_else_is_404(method: str, path: str) -> None:
    with trio.fail_after(5):
        async with serve() as server:
            status, _, _ = await http(server, method, path)
            assert status == 404


async def test_session_rpc_over_http() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            session_id = await open_session(client, create(4000, 4010))
            path = f"/backtest/{session_id}"

            async def call(body: bytes) -> str:
                status, _, reply = await http(server, "POST", path, body)
                assert status == 200
                return reply.decode()

            health = b'{"jsonrpc":"2.0","id":1,"method":"getHealth"}'
            assert await call(health) == ack(1, "ok")
            assert await call(b'{"jsonrpc":"2.0","id":2,"method":"getSlot"}') == ack(2, 4000)
            unknown = b'{"jsonrpc":"2.0","id":3,"method":"getBlockProduction","params":[]}'
            assert await call(unknown) == rpc_error(3, -32601, "method not found")
            no_address = b'{"jsonrpc":"2.0","id":3,"method":"getAccountInfo","params":[]}'
            missing = rpc_error(3, -32602, "invalid params: missing address")
            assert await call(no_address) == missing
            batch = orjson.loads(
                await call(b'[{"jsonrpc":"2.0","id":4,"method":"getSlot"},{"id":5,"method":"x"}]')
            )
            assert isinstance(batch, list)
            assert [item["id"] for item in batch] == [4, 5]
            assert await call(b"{not json") == rpc_error(None, -32700, "parse error")
            status, _, _ = await http(server, "POST", "/backtest/backtest_unknown", b"{}")
            assert status == 404


async def test_api_key_is_required_when_configured() -> None:
    with trio.fail_after(5):
        async with serve(api_key="k3y") as server:
            assert await upgrade_status(server, "/backtest") == 401
            assert await upgrade_status(server, "/backtest", {"X-API-Key": "wrong"}) == 401
            assert await upgrade_status(server, "/backtest", {"X-API-Key": "k3y"}) == 101
            async with connect(server, api_key="k3y") as client:
                await client.send(create(1, 2))
                assert "sessionCreated" in await client.recv_text()
            assert await _rejected_by_trio_websocket(server, "wrong") == 401
            # Refused upgrades never reach the plane, so they take no connection index.
            assert server.connection_count("control") == 2


async def _rejected_by_trio_websocket(server: ReferenceServer, key: str) -> int | None:
    stream = await open_raw(server)
    status: int | None = None
    try:
        async with trio.open_nursery() as nursery:
            await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                "127.0.0.1",
                "/backtest",
                extra_headers=[(b"X-API-Key", key.encode())],
            )
    except* trio_websocket.ConnectionRejected as group:
        rejected = group.exceptions[0]
        assert isinstance(rejected, trio_websocket.ConnectionRejected)
        status = rejected.status_code
    finally:
        await stream.aclose()
    return status


async def test_key_is_ignored_when_not_configured() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            assert await upgrade_status(server, "/backtest", {"X-API-Key": "anything"}) == 101
            assert await upgrade_status(server, "/backtest") == 101


async def test_upgrade_routing() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            assert await upgrade_status(server, "/backtest/backtest_nope") == 404
            assert await upgrade_status(server, "/elsewhere") == 404
            assert await upgrade_status(server, "/backtest", {"Sec-WebSocket-Version": "8"}) == 400
            async with connect(server) as client:
                session_id = await open_session(client, create(10, 20))
                assert await upgrade_status(server, f"/backtest/{session_id}") == 101
                assert await upgrade_status(server, f"/backtest/{session_id}?x=1") == 101


async def test_garbage_request_gets_400() -> None:
    from .helpers import http_raw

    with trio.fail_after(5):
        async with serve() as server:
            status, _, _ = await http_raw(server, b"NOT HTTP AT ALL\r\n\r\n")
            assert status == 400


async def test_errors_in_the_block_are_not_wrapped() -> None:
    with pytest.raises(KeyError, match="boom"):
        async with serve():
            raise KeyError("boom")
