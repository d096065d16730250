"""The replay server: recorded frames back byte for byte, divergences named by step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio_websocket

from simtrio.recording import (
    ReplayDivergence,
    RunUnusable,
    open_recorder,
    read_entries,
    replay_server,
)
from simtrio.wire import backtest_errors, rpc, rpc_server, types
from simtrio.wire.codec import decode_response
from simtrio.wire.types import BacktestStatus
from tests.recording.helpers import (
    CREATE,
    PROGRAM_A,
    PROGRAM_B,
    SESSION,
    RawClient,
    control_texts,
    diff,
    make_single_run,
    read_data,
    replay_client,
    sql,
)

if TYPE_CHECKING:
    from pathlib import Path

    from simtrio.recording import Recorder


def _subscribe(program: str, request_id: int = 1, replay_from: int | None = None) -> str:
    return rpc.Subscribe(rpc.ACCOUNT_DIFF_SUBSCRIBE, request_id, program, replay_from).encode()


async def _step_to_completion(client: RawClient) -> None:
    """Create, then continue by 2 as the recorded single run did, until it completes."""
    await client.send(CREATE)
    await client.read_until("readyForContinue")
    for _ in range(2):
        await client.send(types.ContinueParams(2))
        await client.read_until("readyForContinue", "completed")


async def test_same_continues_replay_identical_frames(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    recorded = control_texts(path, run_id)
    recorded_diffs = [
        d.entry.text
        for d in read_entries(path, run_id)
        if d.entry.kind == rpc.ACCOUNT_DIFF_NOTIFICATION
    ]
    async with replay_client(path, run_id) as (server, client):
        await client.send(CREATE)
        await client.read_until("readyForContinue")
        created = decode_response(client.frames[0])
        assert isinstance(created, types.SessionCreated)
        async with trio_websocket.open_websocket_url(server.url + created.rpc_endpoint) as data:
            await data.send_message(_subscribe(PROGRAM_A))
            ack = rpc.decode_rpc(await data.get_message())
            assert ack == rpc.SubscribeAck(1, 1)
            await client.send(types.ContinueParams(2))
            await client.read_until("readyForContinue")
            await client.send(types.ContinueParams(2))
            await client.read_until("completed")
            await client.send(types.CloseBacktestSession())
            await client.read_until("success")
            notifications = await read_data(data)
        assert server.finished
    assert client.frames == recorded
    assert notifications[:-1] == recorded_diffs
    assert notifications[-1] == rpc_server.encode_rpc(rpc.SubscriptionComplete(1))
    assert server.divergence is None


async def test_a_different_continue_is_a_divergence_naming_the_step(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    errors: list[str] = []

    async def run() -> None:
        async with replay_client(path, run_id) as (server, client):
            await client.send(CREATE)
            await client.read_until("readyForContinue")
            await client.send(types.ContinueParams(2))
            await client.read_until("readyForContinue")
            await client.send(types.ContinueParams(5))  # the recording continued with 2
            errors.extend(await client.read_until("error"))
            assert server.divergence is not None

    with pytest.raises(ReplayDivergence) as caught:
        await run()  # raised when the block ends
    [error_text] = errors
    error = decode_response(error_text)
    assert isinstance(error, types.Error)
    assert isinstance(error.error, backtest_errors.InvalidRequest)
    assert "step 2" in error.error.error
    divergence = caught.value
    assert (divergence.session_id, divergence.step) == (SESSION, 2)
    assert divergence.expected is not None
    assert '"advanceCount":2' in divergence.expected
    assert '"advanceCount":5' in divergence.received
    assert "diverged at step 2 of session backtest_0001" in str(divergence)


async def test_a_step_beyond_the_recording_is_a_divergence(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    async with replay_client(path, run_id, raise_on_divergence=False) as (server, client):
        await _step_to_completion(client)
        await client.send(types.CloseBacktestSession())
        await client.read_until("success")
        await client.send(types.ContinueParams(1))
        await client.read_until("error")
    divergence = server.divergence
    assert divergence is not None
    assert (divergence.step, divergence.expected) == (4, None)
    assert "no such step" in str(divergence)


async def test_a_different_create_is_step_zero(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    async with replay_client(path, run_id, raise_on_divergence=False) as (server, client):
        await client.send(types.CreateBacktestSessionRequest(start_slot=100, end_slot=200))
        await client.read_until("error")
    assert server.divergence is not None
    assert server.divergence.step == 0
    assert "step 0 (the create)" in str(server.divergence)


async def test_data_plane_replay_honours_replay_from_slot_and_programs(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    async with replay_server(path, run_id) as server:
        async with trio_websocket.open_websocket_url(server.control_url) as ws:
            await _step_to_completion(RawClient(ws))
        # After completion: catch-up from the slot on, then the terminal at once.
        endpoint = f"{server.url}/backtest/{SESSION}"
        async with trio_websocket.open_websocket_url(endpoint) as data:
            await data.send_message(_subscribe(PROGRAM_B, 1))  # nothing recorded for B
            await data.send_message(_subscribe(PROGRAM_A, 2, replay_from=102))
            messages = [rpc.decode_rpc(m) for m in await _read_n(data, 6)]
        assert messages[0] == rpc.SubscribeAck(1, 1)
        assert messages[1] == rpc.SubscriptionComplete(1)
        assert messages[2] == rpc.SubscribeAck(2, 2)
        assert [m.slot for m in messages[3:5] if isinstance(m, rpc.AccountDiffNotification)] == [
            102,
            103,
        ]
        assert messages[5] == rpc.SubscriptionComplete(2)
        assert await _upgrade_status(server.port, "/backtest/unknown") == 404


async def _upgrade_status(port: int, path: str) -> int:
    """The HTTP status a raw WebSocket upgrade to ``path`` gets."""
    head = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(head.encode())
            reply = await stream.receive_some(4096)
    return int(reply.split(b" ", 2)[1])


async def _read_n(ws: trio_websocket.WebSocketConnection, n: int) -> list[str]:
    from simtrio.wire.compression import ZstdStreamDecoder

    decoder = ZstdStreamDecoder()
    out: list[str] = []
    with trio.fail_after(5):
        while len(out) < n:
            message = await ws.get_message()
            out.append(decoder.decode(message).decode() if isinstance(message, bytes) else message)
    return out


async def _record_parallel(recorder: Recorder) -> None:
    r = recorder
    a, b = "sub_a", "sub_b"
    ready = types.ReadyForContinue()
    await r.record_sent(None, PARALLEL_CREATE)
    await r.record_control(None, types.SessionCreated(a, f"/backtest/{a}"))
    await r.record_control(None, types.SessionCreated(b, f"/backtest/{b}"))
    await r.record_control(None, types.SessionEventV2(a, 1, types.SlotNotification(0)))
    await r.record_control(
        None, types.SessionsCreatedV2("par_1", [a, b], [None, None], [0, 100], [99, 150])
    )
    await r.record_control(None, types.SessionEventV2(a, 2, ready))
    # Sub-session b is recorded as driver events: the replay numbers them itself.
    from simtrio import events

    await r.record_control(b, events.Status(BacktestStatus.BUNDLE_READY))
    await r.record_control(b, events.ReadyForContinue())
    await r.record_sent(None, types.ContinueSessionRequestV1(a, types.ContinueParams(1)))
    await r.record_control(None, types.SessionEventV2(a, 3, types.Completed()))
    await r.record_sent(None, types.ContinueSessionRequestV1(b, types.ContinueParams(3)))
    await r.record_control(b, events.Slot(101))
    await r.record_control(b, events.Completed())


PARALLEL_CREATE = types.CreateBacktestSessionRequest(start_slot=0, end_slot=150, parallel=True)


async def test_parallel_replay_is_per_sub_session(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with open_recorder(path, create_params=PARALLEL_CREATE, server_url=None) as rec:
        await _record_parallel(rec)
    async with replay_client(path, rec.run_id) as (_server, client):
        await client.send(PARALLEL_CREATE)
        handshake = await client.read_until("sessionsCreatedV2")
        assert len(handshake) == 4
        frames = await _collect(client, 3)  # a ready, b status, b ready (any interleaving)
        # Continue b first although the recording continued a first: no divergence.
        await client.send(types.ContinueSessionRequestV1("sub_b", types.ContinueParams(3)))
        frames += await _collect(client, 2)
        await client.send(types.ContinueSessionRequestV1("sub_a", types.ContinueParams(1)))
        frames += await _collect(client, 1)
    by_session: dict[str, list[tuple[int, object]]] = {}
    for text in frames:
        event = decode_response(text)
        assert isinstance(event, types.SessionEventV2)
        by_session.setdefault(event.session_id, []).append((event.seq_id, event.event))
    assert by_session["sub_a"] == [(2, types.ReadyForContinue()), (3, types.Completed())]
    assert by_session["sub_b"] == [
        (1, types.Status(BacktestStatus.BUNDLE_READY)),
        (2, types.ReadyForContinue()),
        (3, types.SlotNotification(101)),
        (4, types.Completed()),
    ]


async def test_parallel_divergence_goes_to_the_sub_session(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with open_recorder(path, create_params=PARALLEL_CREATE, server_url=None) as rec:
        await _record_parallel(rec)
    async with replay_client(path, rec.run_id, raise_on_divergence=False) as (server, client):
        await client.send(PARALLEL_CREATE)
        await client.read_until("sessionsCreatedV2")
        await _collect(client, 3)
        await client.send(types.ContinueSessionRequestV1("sub_a", types.ContinueParams(7)))
        [error_text] = await _collect(client, 1)
    error = decode_response(error_text)
    assert isinstance(error, types.SessionEventV2)
    assert (error.session_id, error.seq_id) == ("sub_a", 3)
    assert isinstance(error.event, types.Error)
    assert server.divergence is not None
    assert (server.divergence.session_id, server.divergence.step) == ("sub_a", 1)


async def _collect(client: RawClient, n: int) -> list[str]:
    out: list[str] = []
    with trio.fail_after(5):
        while len(out) < n:
            text = await client.ws.get_message()
            assert isinstance(text, str)
            out.append(text)
    return out


async def test_quarantined_or_running_runs_are_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    async with open_recorder(path, create_params=CREATE, server_url=None) as live:
        with pytest.raises(RunUnusable, match="still being recorded"):
            async with replay_server(path, live.run_id):
                pass  # pragma: no cover
    sql(path, "DELETE FROM entries WHERE run_id = ? AND seq = 4", run_id)
    with pytest.raises(RunUnusable, match="failed verification"):
        async with replay_server(path, run_id):
            pass  # pragma: no cover
    with pytest.raises(RunUnusable, match="quarantined"):
        async with replay_server(path, run_id):
            pass  # pragma: no cover


async def test_event_style_single_session_without_a_recorded_reply(tmp_path: Path) -> None:
    from simtrio import events

    path = tmp_path / "runs.db"
    async with open_recorder(path, create_params=CREATE, server_url=None) as rec:
        await rec.record_control(SESSION, events.ReadyForContinue())
        await rec.record_sent(SESSION, types.ContinueParams(3))
        await rec.record_notification(SESSION, diff(100, subscription=4))
        await rec.record_control(SESSION, events.Completed())
    async with replay_client(path, rec.run_id) as (server, client):
        await client.send(CREATE)
        frames = await client.read_until("readyForContinue")
        assert decode_response(frames[0]) == types.SessionCreated(SESSION, f"/backtest/{SESSION}")
        async with trio_websocket.open_websocket_url(f"{server.url}/backtest/{SESSION}") as data:
            await data.send_message(_subscribe(PROGRAM_A))
            await data.get_message()  # ack
            await client.send(types.ContinueParams(3))
            await client.read_until("completed")
            messages = await read_data(data)
    # The recorded subscription id 4 is renumbered to this connection's 1.
    assert [rpc.decode_rpc(m) for m in messages] == [diff(100), rpc.SubscriptionComplete(1)]
