"""Parallel sessions (protocol §12.6): split, handshake frames, routing, attach."""

from __future__ import annotations

import orjson
import pytest
import trio

from simtrio.server import serve
from simtrio.server.control import split_range

from .helpers import (
    READY,
    STATUS_DECODED,
    STATUS_PREPARING,
    STATUS_READY,
    SUCCESS,
    WsClient,
    connect,
    cont,
    create,
    event,
    session_created,
    slot,
    wait_until,
)

COMPLETED_EVENT = '{"method":"completed","params":{"summary":null}}'


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (4000, 4199, [(4000, 4099), (4100, 4199)]),
        (4050, 4250, [(4050, 4099), (4100, 4199), (4200, 4250)]),
        (4000, 4000, [(4000, 4000)]),
        (4099, 4100, [(4099, 4099), (4100, 4100)]),
    ],
)
def test_split_range(start: int, end: int, expected: list[tuple[int, int]]) -> None:
    assert split_range(start, end, 100) == expected


def _continue_v1(session_id: str, count: int) -> str:
    return orjson.dumps(
        {
            "method": "continueSessionV1",
            "params": {
                "sessionId": session_id,
                "request": {"advanceCount": count, "transactions": [], "modifyAccountStates": {}},
            },
        }
    ).decode()


async def _create(client: WsClient, start: int, end: int, **extra: object) -> tuple[str, list[str]]:
    await client.send(create(start, end, parallel=True, **extra))
    ids: list[str] = []
    ranges = split_range(start, end, 100)
    for low, _high in ranges:
        created = orjson.loads(await client.recv_text())
        assert created["method"] == "sessionCreated"
        sub = created["params"]["session_id"]
        assert orjson.dumps(created).decode() == session_created(sub)
        ids.append(sub)
        await client.expect(
            event(sub, 1, STATUS_PREPARING), event(sub, 2, STATUS_READY), event(sub, 3, slot(low))
        )
    final = orjson.loads(await client.recv_text())
    assert final["method"] == "sessionsCreatedV2"
    control_id = final["params"]["control_session_id"]
    assert control_id.startswith("parallel_")
    assert final["params"] == {
        "control_session_id": control_id,
        "session_ids": ids,
        "task_ids": [None] * len(ids),
        "start_slots": [low for low, _ in ranges],
        "end_slots": [high for _, high in ranges],
    }
    readies = sorted(await client.recv_texts(len(ids)))
    assert readies == sorted(event(sub, 4, READY) for sub in ids)
    return control_id, ids


async def test_parallel_create_handshake() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            control_id, ids = await _create(client, 4000, 4199)
            assert server.parallel_sessions == {control_id: tuple(ids)}
            assert all(server.sessions[sub].numbered for sub in ids)
            assert server.sessions[ids[1]].start_slot == 4100


async def test_routing_by_session_id() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            _control, (a1, a2) = await _create(client, 4000, 4199)
            await client.send(_continue_v1(a2, 1))
            await client.expect(
                event(a2, 5, STATUS_DECODED), event(a2, 6, slot(4101)), event(a2, 7, READY)
            )
            await client.send(_continue_v1("backtest_nope", 1))
            await client.expect(
                '{"method":"error","params":{"SessionNotFound":{"session_id":"backtest_nope"}}}'
            )
            await client.send(cont(1))
            text = await client.recv_text()
            assert text.startswith('{"method":"error","params":{"InvalidRequest":')
            to_v1 = {"sessionId": a1, "request": {"slot": 4000, "batchIndex": None}}
            await client.send(
                orjson.dumps({"method": "continueToSessionV1", "params": to_v1}).decode()
            )
            await client.expect(
                event(a1, 5, slot(4001)),
                event(a1, 6, '{"method":"paused","params":{"slot":4000,"batch_index":null}}'),
            )
            await client.send(_continue_v1(a1, 200))
            frames = await client.recv_until(lambda t: "completed" in t)
            assert frames[0] == event(a1, 7, STATUS_DECODED)
            assert frames[-1] == event(a1, 7 + 98 + 1, COMPLETED_EVENT)
            await client.send(_continue_v1(a1, 1))
            await client.expect(event(a1, 107, '{"method":"error","params":"NoMoreBlocks"}'))
            close = {"method": "closeSessionV1", "params": {"session_id": a2}}
            await client.send(orjson.dumps(close).decode())
            await client.expect(event(a2, 8, SUCCESS))
            assert a2 not in server.sessions
            await client.send(_continue_v1(a2, 1))
            await client.expect(event(a2, 9, '{"method":"error","params":"NoMoreBlocks"}'))


async def test_parallel_summary_in_completed_event() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            _control, (a1,) = await _create(
                client, 10, 12, sendSummary=True, agents=[{"name": "x"}]
            )
            await client.send(_continue_v1(a1, 3))
            frames = await client.recv_until(lambda t: "completed" in t)
            last = orjson.loads(frames[-1])["params"]["event"]
            assert last["method"] == "completed"
            assert set(last["params"]) == {"summary"}
            assert last["params"]["summary"]["correct_simulation"] > 0


async def test_parallel_attach_replays_and_resends_readiness() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            async with connect(server) as client:
                control_id, (a1, a2) = await _create(client, 4000, 4199, disconnectTimeoutSecs=30)
                await client.send(_continue_v1(a2, 1))
                await client.expect(
                    event(a2, 5, STATUS_DECODED), event(a2, 6, slot(4101)), event(a2, 7, READY)
                )
            await wait_until(lambda: not server.sessions[a1].attached)
            assert control_id in server.parallel_sessions
            async with connect(server) as client:
                attach_frame = {
                    "method": "attachParallelControlSessionV2",
                    "params": {"control_session_id": control_id, "last_sequences": {a1: 4, a2: 5}},
                }
                await client.send(orjson.dumps(attach_frame).decode())
                await client.expect(
                    event(a1, 5, READY),  # a1's readiness (4) was seen: re-sent
                    event(a2, 6, slot(4101)),
                    event(a2, 7, READY),  # above a2's cursor: replayed only
                    '{"method":"parallelSessionAttachedV2","params":{"control_session_id":"'
                    + control_id
                    + '","session_ids":["'
                    + a1
                    + '","'
                    + a2
                    + '"],"task_ids":[null,null]}}',
                )
                await client.send(_continue_v1(a1, 1))
                await client.expect(
                    event(a1, 6, STATUS_DECODED), event(a1, 7, slot(4001)), event(a1, 8, READY)
                )
            await wait_until(lambda: not server.sessions[a1].attached)
            async with connect(server) as client:
                attach_frame["params"] = {"control_session_id": control_id}
                await client.send(orjson.dumps(attach_frame).decode())
                frames = await client.recv_until(lambda t: "parallelSessionAttachedV2" in t)
                assert len(frames) == 8 + 7 + 1  # everything retained, nothing re-sent


async def test_parallel_takeover_and_removal() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            async with connect(server) as first:
                control_id, ids = await _create(first, 0, 99, disconnectTimeoutSecs=10)
                async with connect(server) as second:
                    frame = {
                        "method": "attachParallelControlSessionV2",
                        "params": {"control_session_id": control_id, "last_sequences": {ids[0]: 4}},
                    }
                    await second.send(orjson.dumps(frame).decode())
                    frames = await second.recv_until(lambda t: "parallelSessionAttachedV2" in t)
                    assert frames[0] == event(ids[0], 5, READY)
                    await first.expect_closed()
            async with connect(server) as client:
                control_id2, ids2 = await _create(client, 0, 99)
            await wait_until(lambda: control_id2 not in server.parallel_sessions)
            assert ids2[0] not in server.sessions
            async with connect(server) as client:
                frame = {
                    "method": "attachParallelControlSessionV2",
                    "params": {"control_session_id": control_id2, "last_sequences": {}},
                }
                await client.send(orjson.dumps(frame).decode())
                await client.expect(
                    '{"method":"error","params":{"SessionNotFound":{"session_id":"'
                    + control_id2
                    + '"}}}'
                )


async def test_parallel_create_limit() -> None:
    with trio.fail_after(5):
        async with serve(max_parallel_sessions=2) as server, connect(server) as client:
            await client.send(create(0, 299, parallel=True))
            text = await client.recv_text()
            assert text.startswith('{"method":"error","params":{"InvalidRequest":')
