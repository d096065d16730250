"""End to end: a managed session's run, recorded from the driver's side, replays offline.

The first run goes against the reference server; the strategy records every event it gets and
every continue it sends. The same strategy then runs against the replay of that recording and
must see exactly the same events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio_websocket

from simtrio import events, server
from simtrio.managed.session import open_managed_session
from simtrio.recording import RunStatus, get_run, open_recorder, replay_server
from simtrio.wire.codec import decode_frame
from simtrio.wire.types import (
    BacktestRequest,
    CloseBacktestSession,
    Completed,
    ContinueParams,
    CreateBacktestSessionRequest,
)
from tests.recording.helpers import PROGRAM_A, RawClient

if TYPE_CHECKING:
    from pathlib import Path

    from simtrio.recording import Recorder

CREATE = CreateBacktestSessionRequest(start_slot=100, end_slot=105, disconnect_timeout_secs=30)


async def _strategy(
    url: str, recorder: Recorder | None
) -> tuple[list[events.Event], list[events.Event]]:
    """Continue by two slots at every readiness; collect control and data events apart."""
    control: list[events.Event] = []
    data: list[events.Event] = []
    with trio.fail_after(10):
        async with open_managed_session(url, "", CREATE) as session:
            sid = session.session_info.session_id
            session.subscribe_account_diffs([PROGRAM_A])
            async for event in session.events():
                if recorder is not None:
                    await recorder.record_event(sid, event, program_id=PROGRAM_A)
                if isinstance(event, events.AccountDiff):
                    data.append(event)
                    continue
                control.append(event)
                if isinstance(event, events.ReadyForContinue):
                    step = ContinueParams(2)
                    if recorder is not None:
                        await recorder.record_sent(sid, step)
                    await session.send_continue(step)
    return control, data


async def test_managed_run_replays_to_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with (
        server.serve(seed=11) as reference,
        open_recorder(path, create_params=CREATE, server_url=reference.url) as rec,
    ):
        live_control, live_data = await _strategy(reference.url, rec)
    assert get_run(path, rec.run_id).status is RunStatus.ENDED
    assert isinstance(live_control[-1], events.Completed)
    assert live_data  # the synthetic chain produced account diffs for the program

    async with replay_server(path, rec.run_id) as replay:
        replay_control, replay_data = await _strategy(replay.url, None)
        assert replay.divergence is None
    assert replay_control == live_control
    assert replay_data == live_data


async def _raw_steps(url: str, recorder: Recorder | None) -> list[str]:
    """Create, continue by two until completed, close: every control frame as read."""
    async with trio_websocket.open_websocket_url(url) as ws:
        client = RawClient(ws)

        async def send(request: BacktestRequest) -> None:
            if recorder is not None:
                await recorder.record_sent(None, request)
            await client.send(request)

        async def read(*methods: str) -> str:
            frames = await client.read_until(*methods)
            if recorder is not None:
                for text in frames:
                    seq_id, response = decode_frame(text)
                    await recorder.record_control(None, response, seq_id=seq_id)
            return _method_of(frames[-1])

        await send(CREATE)
        last = await read("readyForContinue")
        while last != "completed":
            await send(ContinueParams(2))
            last = await read("readyForContinue", "completed")
        await send(CloseBacktestSession())
        await read("success")
    return client.frames


def _method_of(text: str) -> str:
    response = decode_frame(text)[1]
    return "completed" if isinstance(response, Completed) else "other"


async def test_raw_frames_of_a_reference_run_replay_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with (
        server.serve(seed=5) as reference,
        open_recorder(path, create_params=CREATE, server_url=reference.url) as rec,
    ):
        live = await _raw_steps(reference.control_url, rec)
    async with replay_server(path, rec.run_id) as replay:
        replayed = await _raw_steps(replay.control_url, None)
    assert replayed == live
    assert len(live) > 10
