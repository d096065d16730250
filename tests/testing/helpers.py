"""A small recorded run for the replay fixture's tests, and the strategy that replays it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from simtrio import events
from simtrio.managed.session import open_managed_session
from simtrio.params import Continue, CreateSession
from simtrio.recording import open_recorder
from simtrio.server import serve

if TYPE_CHECKING:
    from pathlib import Path

    from simtrio.recording import Recorder

CREATE = CreateSession(1000, end_slot=1011, send_summary=True, disconnect_timeout_secs=60)
STEP = 4

# The same strategy as source text, for the user test files that pytester writes.
STRATEGY_SOURCE = f"""
import simtrio
from simtrio import events

CREATE = simtrio.CreateSession(1000, end_slot=1011, send_summary=True, disconnect_timeout_secs=60)


async def strategy(url, step={STEP}):
    seen = []
    async with simtrio.open_managed_session(url, "", CREATE) as session:
        async for event in session.events():
            seen.append(event)
            if isinstance(event, events.ReadyForContinue):
                await session.send_continue(simtrio.Continue(step))
    return seen
"""


async def strategy(
    url: str, recorder: Recorder | None = None, step: int = STEP
) -> list[events.Event]:
    """Continue by ``step`` at every readiness until ``Completed`` (or an error event)."""
    seen: list[events.Event] = []
    async with open_managed_session(url, "", CREATE) as session:
        session_id = session.session_info.session_id
        async for event in session.events():
            seen.append(event)
            if recorder is not None:
                await recorder.record_event(session_id, event)
            if isinstance(event, events.ErrorEvent):
                break  # no readiness follows an error: the step did not happen
            if isinstance(event, events.ReadyForContinue):
                cont = Continue(step)
                if recorder is not None:
                    await recorder.record_sent(session_id, cont.to_params())
                await session.send_continue(cont)
    return seen


async def record_run(path: Path) -> str:
    """Record one run of :func:`strategy` against the reference server; returns its id."""
    with trio.fail_after(10):
        async with (
            serve() as server,
            open_recorder(path, create_params=CREATE, server_url=server.url) as recorder,
        ):
            await strategy(server.url, recorder)
    return recorder.run_id


def record_run_sync(path: Path) -> str:
    """:func:`record_run` outside any trio loop (for sync tests and fixtures)."""
    return trio.run(record_run, path)
