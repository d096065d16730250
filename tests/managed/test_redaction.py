"""Managed and parallel sessions against a server that echoes the API key back.

The key is planted in every transaction's logs (data plane, compressed) and in every error
string (control plane); it must reach no event, repr, exception, log record or recording.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio

from simtrio import events
from simtrio.errors import CreateFailed, SimtrioError
from simtrio.managed.config import ManagedConfig
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.managed.session import open_managed_session
from simtrio.params import CreateSession
from simtrio.recording import open_recorder, read_entries
from simtrio.server import FaultPlan, Faults, serve
from tests.client.helpers import assert_key_absent
from tests.echoing import echo_key
from tests.managed.driving import drive

if TYPE_CHECKING:
    from pathlib import Path

KEY = "sk-echoed-secret-0451"
CONFIG = ManagedConfig(rng_seed=5)
SINGLE = CreateSession(0, end_slot=19, disconnect_timeout_secs=60, send_summary=True)
PARALLEL = CreateSession(0, end_slot=59, disconnect_timeout_secs=60, parallel=True)


def _assert_clean(seen: list[events.Event]) -> None:
    transactions = [e for e in seen if isinstance(e, events.Transaction)]
    assert transactions, "the run must carry transactions for the check to mean anything"
    for event in seen:
        assert KEY not in repr(event)
        assert KEY not in str(event)
    assert any("<redacted>" in repr(e) for e in transactions)


@pytest.fixture(autouse=True)
def _echoing(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    echo_key(monkeypatch, KEY)
    caplog.set_level(logging.DEBUG)


async def test_managed_session_events_and_recording(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "runs.db"
    with trio.fail_after(20):
        async with serve(seed=3, api_key=KEY) as server:
            programs = server.config.program_ids
            async with (
                open_recorder(db, create_params=SINGLE, server_url=server.url) as recorder,
                open_managed_session(
                    server.url, KEY, SINGLE, config=CONFIG, recorder=recorder
                ) as session,
            ):
                session.subscribe_transactions(programs)
                seen = await drive(session, 3)
    _assert_clean(seen)
    assert KEY not in caplog.text
    for entry in read_entries(db, recorder.run_id):
        assert KEY not in repr(entry)
    with sqlite3.connect(db) as conn:
        for row in conn.execute("SELECT * FROM runs"):
            assert KEY not in repr(row)
    assert KEY.encode() not in db.read_bytes()


async def test_parallel_sub_sessions(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[events.Event] = []

    async def one(sub: ParallelSubSession) -> None:
        seen.extend(await drive(sub, 3))

    with trio.fail_after(20):
        async with serve(seed=4, api_key=KEY, bundle_size=20) as server:
            programs = server.config.program_ids
            async with open_parallel_session(server.url, KEY, PARALLEL, config=CONFIG) as par:
                subs = par.take_sub_sessions()
                assert len(subs) == 3
                async with trio.open_nursery() as nursery:
                    for sub in subs:
                        sub.subscribe_transactions(programs)
                        nursery.start_soon(one, sub)
    _assert_clean(seen)
    assert KEY not in caplog.text


async def test_an_echoed_error_fails_the_create_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge = CreateSession(0, end_slot=999_999, disconnect_timeout_secs=60, parallel=True)
    with trio.fail_after(20):
        async with serve(seed=4, api_key=KEY, max_parallel_sessions=2) as server:
            with pytest.raises(SimtrioError) as info:
                async with open_parallel_session(server.url, KEY, huge, config=CONFIG):
                    pass
    assert isinstance(info.value, CreateFailed)
    assert "<redacted>" in str(info.value)
    assert_key_absent(info.value, KEY)
    assert KEY not in caplog.text


async def test_a_corrupt_compressed_message_quoting_the_key_is_logged_without_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The bytes of a message that does not decompress are quoted in the reason of the loss.
    monkeypatch.setattr("simtrio.server.conn.CORRUPT_MESSAGE", b"\x00\x01" + KEY.encode())
    faults = FaultPlan(data_connections={1: Faults(corrupt_compressed_at=2)})
    with trio.fail_after(20):
        async with serve(seed=3, api_key=KEY, faults=faults) as server:
            programs = server.config.program_ids
            async with open_managed_session(server.url, KEY, SINGLE, config=CONFIG) as session:
                session.subscribe_transactions(programs)
                seen = await drive(session, 3)
            assert server.connection_count("data") >= 2
    _assert_clean(seen)
    assert "corrupt compressed message" in caplog.text
    assert KEY not in caplog.text
