"""BacktestClient: construction, connecting, create_sessions and available_ranges."""

from __future__ import annotations

import logging

import orjson
import pytest
import trio
import trio.testing

from simtrio import wire
from simtrio.client import BacktestClient
from simtrio.errors import ConnectError, ConnectionClosed, InvalidParams, RemoteError
from simtrio.params import CreateSession
from tests.client.fakes import CREATED, Peer, answer, fake_server, http_fake, refused_port
from tests.client.helpers import KEY, assert_key_absent, bounded

PARALLEL_CREATE = (
    '{"method":"createBacktestSession","params":{"startSlot":0,"endSlot":250,"signerFilter":[],'
    '"sendSummary":false,"capacityWaitTimeoutSecs":null,"disconnectTimeoutSecs":null,'
    '"extraComputeUnits":null,"agents":[],"discoveries":[],"parallel":true}}'
)


def created(session_id: str) -> str:
    return (
        f'{{"method":"sessionCreated","params":{{"session_id":"{session_id}",'
        f'"rpc_endpoint":"/backtest/{session_id}","task_id":null}}}}'
    )


# -- construction --------------------------------------------------------------------------------


def test_constructor_needs_no_loop_and_normalises_the_url() -> None:
    # Runs outside trio: constructing must not touch the event loop or the network.
    assert BacktestClient("sim.example.net").url == "wss://sim.example.net/backtest"
    assert BacktestClient("ws://127.0.0.1:7000/").url == "ws://127.0.0.1:7000/backtest"
    assert BacktestClient("wss://h.example/backtest").url == "wss://h.example/backtest"
    assert BacktestClient("https://h.example").url == "https://h.example"
    client = BacktestClient("127.0.0.1:7000", KEY, connect_timeout=3.0, request_timeout=4.0)
    assert client.url == "wss://127.0.0.1:7000/backtest"
    assert client.connect_timeout == 3.0
    assert client.request_timeout == 4.0


def test_repr_and_str_never_show_the_key() -> None:
    client = BacktestClient("ws://127.0.0.1:1", KEY)
    for text in (repr(client), str(client), f"{client!r:>200}"):
        assert KEY not in text
        assert "ws://127.0.0.1:1/backtest" in text
    assert "<set>" in repr(client)
    assert "<none>" in repr(BacktestClient("ws://127.0.0.1:1"))


@bounded()
async def test_constructor_does_no_io() -> None:
    async with fake_server() as server:
        BacktestClient(server.url, KEY)
        await trio.testing.wait_all_tasks_blocked()
        assert server.upgrades == {}


# -- connecting ----------------------------------------------------------------------------------


@bounded()
async def test_key_header_and_path() -> None:
    async with fake_server(answer(CREATED)) as server:
        async with BacktestClient(server.url, KEY).create_session(CreateSession(1, end_slot=2)):
            pass
        async with BacktestClient(server.url).create_session(CreateSession(1, end_slot=2)):
            pass
    first, second = server.connections
    assert first.path == "/backtest"
    assert first.header("X-API-Key") == KEY
    assert second.header("X-API-Key") == ""


@bounded()
async def test_rejected_upgrade_401_is_fatal_and_redacted() -> None:
    async with fake_server(reject=401, reject_body=b"bad key " + KEY.encode()) as server:
        client = BacktestClient(server.url, KEY)
        with pytest.raises(ConnectError) as info:
            async with client.create_session(CreateSession(1, end_slot=2)):
                pytest.fail("unreachable")
    assert info.value.status == 401
    assert info.value.fatal
    assert "redacted" in str(info.value)
    assert_key_absent(info.value)


@bounded()
async def test_rejected_upgrade_404_is_not_fatal() -> None:
    async with fake_server(reject=404) as server:
        client = BacktestClient(server.url, KEY)
        with pytest.raises(ConnectError) as info:
            async with client.attach_session("backtest_1"):
                pytest.fail("unreachable")
        with pytest.raises(ConnectError) as info2:
            await client.create_sessions(CreateSession(1, end_slot=2))
    assert info.value.status == 404
    assert not info.value.fatal
    assert info2.value.status == 404
    assert server.upgrades == {"/backtest": 2}  # never retried


@bounded()
async def test_refused_connection() -> None:
    client = BacktestClient(f"ws://127.0.0.1:{refused_port()}", KEY)
    with pytest.raises(ConnectError) as info:
        async with client.create_session(CreateSession(1, end_slot=2)):
            pytest.fail("unreachable")
    assert info.value.status is None
    assert_key_absent(info.value)


@bounded()
async def test_non_websocket_url_is_a_fatal_connect_error() -> None:
    client = BacktestClient("http://127.0.0.1:1/backtest", KEY)
    with pytest.raises(ConnectError) as info:
        async with client.create_session(CreateSession(1, end_slot=2)):
            pytest.fail("unreachable")
    assert info.value.fatal
    with pytest.raises(ConnectError):
        await client.create_sessions(CreateSession(1, end_slot=2))
    with pytest.raises(ConnectError):
        await client.available_ranges()


@bounded()
async def test_invalid_params_before_any_io() -> None:
    async with fake_server() as server:
        client = BacktestClient(server.url)
        with pytest.raises(InvalidParams):
            async with client.create_session(CreateSession(1, end_slot=2, parallel=True)):
                pytest.fail("unreachable")
        with pytest.raises(InvalidParams):
            await client.create_sessions("nope")  # type: ignore[arg-type]
        assert server.upgrades == {}


# -- create_sessions -----------------------------------------------------------------------------


async def _run_create_sessions(
    *frames: str, parallel: bool = True
) -> tuple[list[str], list[str], Peer]:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(*frames)

    seen: list[str] = []
    async with fake_server(script) as server:
        client = BacktestClient(server.url, KEY)
        ids = await client.create_sessions(
            CreateSession(0, end_slot=250, parallel=parallel), on_session_created=seen.append
        )
        with trio.fail_after(1):
            await server.connections[0].gone.wait()  # the socket is closed afterwards
    return ids, seen, server.connections[0]


@bounded()
async def test_create_sessions_v2() -> None:
    v2 = (
        '{"method":"sessionsCreatedV2","params":{"control_session_id":"parallel_1",'
        '"session_ids":["a1","a2"],"task_ids":[null,null],"start_slots":[0,100],'
        '"end_slots":[99,199]}}'
    )
    event = (
        '{"method":"sessionEventV2","params":{"session_id":"a1","seq_id":1,'
        '"event":{"method":"slotNotification","params":0}}}'
    )
    ids, seen, peer = await _run_create_sessions(created("a1"), event, created("a2"), v2)
    assert ids == ["a1", "a2"]
    assert seen == ["a1", "a2"]
    assert peer.received[0] == PARALLEL_CREATE


@bounded()
async def test_create_sessions_legacy_reply() -> None:
    legacy = '{"method":"sessionsCreated","params":{"session_ids":["x","y","z"]}}'
    ids, seen, _ = await _run_create_sessions(legacy)
    assert ids == ["x", "y", "z"]
    assert seen == []


@bounded()
async def test_create_sessions_falls_back_to_streamed_ids() -> None:
    empty = '{"method":"sessionsCreated","params":{"session_ids":[]}}'
    ids, seen, _ = await _run_create_sessions(
        '{"method":"status","params":{"status":"bundleReady"}}',
        created("s1"),
        '{"method":"mystery"}',
        created("s2"),
        empty,
    )
    assert ids == ["s1", "s2"]
    assert seen == ["s1", "s2"]


@bounded()
async def test_create_sessions_not_parallel_ends_at_first_created() -> None:
    ids, seen, peer = await _run_create_sessions(created("only"), created("never"), parallel=False)
    assert ids == ["only"]
    assert seen == ["only"]
    assert orjson.loads(peer.received[0])["params"]["parallel"] is False


@bounded()
async def test_create_sessions_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(
            created("s1"), '{"method":"error","params":{"InvalidRequest":{"error":"no"}}}'
        )

    async with fake_server(script) as server:
        with pytest.raises(RemoteError) as info:
            await BacktestClient(server.url).create_sessions(
                CreateSession(0, end_slot=9, parallel=True)
            )
        with trio.fail_after(1):
            await server.connections[0].gone.wait()
    assert isinstance(info.value.error, wire.InvalidRequest)
    assert info.value.error.error == "no"


@bounded()
async def test_create_sessions_connection_closed() -> None:
    async with fake_server(answer(created("s1"), close=True)) as server:
        with pytest.raises(ConnectionClosed):
            await BacktestClient(server.url).create_sessions(
                CreateSession(0, end_slot=9, parallel=True)
            )


# -- available_ranges ----------------------------------------------------------------------------

RANGES = (
    b'[{"snapshotSlot":3999,"snapshotSlotUtc":"2026-01-05T10:00:00Z","bundleStartSlot":4000,'
    b'"bundleStartSlotUtc":"2026-01-05T10:00:00Z","maxBundleEndSlot":4999,'
    b'"maxBundleEndSlotUtc":"2026-01-05T10:06:40Z","kind":"x"},{"bundle_start_slot":5000}]'
)


@bounded()
async def test_available_ranges_ok_with_key() -> None:
    async with http_fake(200, RANGES) as fake:
        ranges = await BacktestClient(fake.url + "/backtest", KEY).available_ranges()
        await BacktestClient(fake.url).available_ranges()
    assert [r.bundle_start_slot for r in ranges] == [4000, 5000]
    assert ranges[0].max_bundle_end_slot == 4999
    assert ranges[1].max_bundle_end_slot is None
    with_key, without = fake.requests
    assert with_key.startswith(b"GET /available-ranges HTTP/1.1\r\n")
    assert f"X-API-Key: {KEY}\r\n".encode() in with_key
    assert b"x-api-key" not in without.lower()


@bounded()
async def test_available_ranges_non_2xx() -> None:
    async with http_fake(503, b"draining, key " + KEY.encode()) as fake:
        with pytest.raises(ConnectError) as info:
            await BacktestClient(fake.url, KEY).available_ranges()
    message = str(info.value)
    assert info.value.status == 503
    assert not info.value.fatal
    assert fake.url.replace("ws://", "http://") + "/available-ranges" in message
    assert "503" in message
    assert "draining" in message
    assert_key_absent(info.value)


@bounded()
async def test_available_ranges_refused() -> None:
    port = refused_port()
    with pytest.raises(ConnectError) as info:
        await BacktestClient(f"ws://127.0.0.1:{port}", KEY).available_ranges()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.__cause__ is not None
    assert_key_absent(info.value)


@bounded()
async def test_key_absent_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, '{"method":"readyForContinue"}')

    async with fake_server(script) as server:
        client = BacktestClient(server.url, KEY)
        async with client.create_session(CreateSession(1, end_slot=2)) as session:
            await session.ensure_ready()
            assert KEY not in repr(session)
            await session.close(timeout=0.01)
    assert caplog.records  # something was logged, and none of it carries the key
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)
