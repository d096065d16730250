"""The plain client against the embedded reference server (protocol §12)."""

from __future__ import annotations

import pytest

from simtrio import wire
from simtrio.client import BacktestClient
from simtrio.core.session import ReadyOutcome
from simtrio.errors import ConnectError, RemoteError
from simtrio.params import Continue, CreateSession
from simtrio.server import serve
from tests.client.helpers import KEY, assert_key_absent, bounded

ST = wire.BacktestStatus


@bounded()
async def test_full_run_to_completion() -> None:
    async with serve(seed=3, api_key=KEY) as server:
        client = BacktestClient(server.url, KEY)
        create = CreateSession(
            4000, end_slot=4005, send_summary=True, agents=[{"name": "arb", "mode": "x"}]
        )
        async with client.create_session(create) as session:
            assert session.session_id is not None
            assert session.session_id.startswith("backtest_")
            assert session.rpc_endpoint == f"/backtest/{session.session_id}"
            assert await session.ensure_ready() is ReadyOutcome.READY
            assert session.last_sequence is None  # no disconnect timeout: unnumbered

            first = await session.advance(Continue(2))
            assert first.ready_for_continue
            assert first.slot_notifications == 2
            assert first.last_slot == 4002
            assert first.statuses[0] == ST.DECODED_TRANSACTIONS

            rest = await session.advance(Continue(10))
            assert rest.completed
            assert not rest.ready_for_continue
            assert rest.last_slot == 4005
            assert rest.summary is not None
            assert rest.summary.correct_simulation > 0
            assert rest.agent_stats is not None
            assert [a.name for a in rest.agent_stats] == ["arb"]
            assert rest.agent_stats[0].slots_processed == 6

            with pytest.raises(RemoteError) as info:
                await session.advance(Continue(1))
            assert isinstance(info.value.error, wire.NoMoreBlocks)

            await session.close(timeout=2)
        assert session.session_id not in server.sessions


@bounded()
async def test_continue_until_ready_and_wait_for_status() -> None:
    async with serve() as server:
        client = BacktestClient(server.url)
        async with client.create_session(CreateSession(100, slot_count=3)) as session:
            await session.wait_for_status(ST.BUNDLE_READY)
            result = await session.continue_until_ready(Continue(2))
            assert result.ready_for_continue
            assert result.slot_notifications == 2
            await session.close(timeout=2)


@bounded()
async def test_attach_after_reconnect_replays_above_the_cursor() -> None:
    async with serve(seed=5) as server:
        client = BacktestClient(server.url)
        create = CreateSession(4000, end_slot=4005, disconnect_timeout_secs=60)
        async with client.create_session(create) as session:
            await session.ensure_ready()
            await session.advance(Continue(2))
            session_id = session.session_id
            cursor = session.last_sequence
            assert cursor is not None
            await session.send(Continue(1))
            # The socket is closed here; the session survives, and its step output is retained.
        assert session_id is not None
        assert server.sessions[session_id].numbered

        async with client.attach_session(session_id, cursor) as again:
            assert again.session_id == session_id
            assert again.last_sequence is None
            first = await again.next_response()
            assert again.last_sequence == cursor + 1
            assert first == wire.Status(ST.DECODED_TRANSACTIONS)
            assert await again.ensure_ready() is ReadyOutcome.READY
            result = await again.advance(Continue(10))
            assert result.completed
            await again.close(timeout=2)
        assert session_id not in server.sessions


@bounded()
async def test_attach_unknown_session() -> None:
    async with serve() as server:
        with pytest.raises(RemoteError) as info:
            async with BacktestClient(server.url).attach_session("backtest_nope"):
                pytest.fail("unreachable")
    assert isinstance(info.value.error, wire.SessionNotFound)


@bounded()
async def test_parallel_create_sessions() -> None:
    async with serve(bundle_size=100) as server:
        seen: list[str] = []
        client = BacktestClient(server.url)
        ids = await client.create_sessions(
            CreateSession(4050, end_slot=4250, parallel=True, disconnect_timeout_secs=30),
            on_session_created=seen.append,
        )
        assert len(ids) == 3
        assert ids == seen
        assert server.parallel_sessions  # kept for a later attach
        (group,) = server.parallel_sessions.values()
        assert list(group) == ids


@bounded()
async def test_wrong_key_is_rejected_fatally() -> None:
    async with serve(api_key=KEY) as server:
        wrong = "sk-wrong-" + KEY
        with pytest.raises(ConnectError) as info:
            async with BacktestClient(server.url, wrong).create_session(
                CreateSession(1, end_slot=2)
            ):
                pytest.fail("unreachable")
    assert info.value.status == 401
    assert info.value.fatal
    assert_key_absent(info.value, wrong)


@bounded()
async def test_available_ranges_from_the_reference_server() -> None:
    async with serve(window_start=0, window_end=299, bundle_size=100) as server:
        ranges = await BacktestClient(server.url, KEY).available_ranges()
    assert [(r.bundle_start_slot, r.max_bundle_end_slot) for r in ranges] == [
        (0, 99),
        (100, 199),
        (200, 299),
    ]
