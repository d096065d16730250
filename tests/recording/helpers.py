"""Shared builders for the recording tests: scripted runs and a raw WebSocket client."""

from __future__ import annotations

import sqlite3
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import orjson
import trio
import trio_websocket

from simtrio.recording import Plane, open_recorder, replay_server
from simtrio.recording.format import RUN_ENDED
from simtrio.recording.records import PendingEntry
from simtrio.wire import rpc, types
from simtrio.wire.codec import encode
from simtrio.wire.compression import ZstdStreamDecoder
from simtrio.wire.types import BacktestStatus

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable
    from pathlib import Path

    import pytest

    from simtrio.recording import Recorder, ReplayServer, RunStore
    from simtrio.recording.records import ActiveRun

PROGRAM_A = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
PROGRAM_B = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
SESSION = "backtest_0001"
_T = TypeVar("_T")

CREATE_TEXT = '{"method":"createBacktestSession","params":{"startSlot":1,"endSlot":2}}'
"""A create request as the store keeps it (canonical text)."""

CREATE = types.CreateBacktestSessionRequest(
    start_slot=100, end_slot=103, disconnect_timeout_secs=30
)


def diff(slot: int, account: str = "acct", subscription: int = 1) -> rpc.AccountDiffNotification:
    pre = {"lamports": slot, "owner": PROGRAM_A}
    post = {"lamports": slot + 1, "owner": PROGRAM_A}
    return rpc.AccountDiffNotification(subscription, slot, account, f"sig{slot}", pre, post)


async def record_single_run(recorder: Recorder) -> None:
    """A complete single session: two steps and a close, with account diffs of program A."""
    r = recorder
    await r.record_sent(None, CREATE)
    await r.record_control(SESSION, types.SessionCreated(SESSION, f"/backtest/{SESSION}"))
    await r.record_control(SESSION, types.Status(BacktestStatus.PREPARING_BUNDLE), seq_id=1)
    await r.record_control(SESSION, types.Status(BacktestStatus.BUNDLE_READY), seq_id=2)
    await r.record_control(SESSION, types.SlotNotification(100), seq_id=3)
    await r.record_control(SESSION, types.ReadyForContinue(), seq_id=4)
    await r.record_sent(SESSION, types.ContinueParams(2))
    await r.record_control(SESSION, types.Status(BacktestStatus.DECODED_TRANSACTIONS), seq_id=5)
    await r.record_notification(SESSION, diff(100), program_id=PROGRAM_A)
    await r.record_notification(SESSION, diff(100, "other"), program_id=PROGRAM_A)
    await r.record_control(SESSION, types.SlotNotification(101), seq_id=6)
    await r.record_notification(SESSION, diff(101), program_id=PROGRAM_A)
    await r.record_control(SESSION, types.SlotNotification(102), seq_id=7)
    await r.record_control(SESSION, types.ReadyForContinue(), seq_id=8)
    await r.record_sent(SESSION, types.ContinueParams(2))
    await r.record_control(SESSION, types.Status(BacktestStatus.DECODED_TRANSACTIONS), seq_id=9)
    await r.record_notification(SESSION, diff(102), program_id=PROGRAM_A)
    await r.record_control(SESSION, types.SlotNotification(103), seq_id=10)
    await r.record_notification(SESSION, diff(103), program_id=PROGRAM_A)
    await r.record_notification(SESSION, rpc.SubscriptionComplete(1), program_id=PROGRAM_A)
    await r.record_control(SESSION, types.Completed(), seq_id=11)
    await r.record_sent(SESSION, types.CloseBacktestSession())
    await r.record_control(SESSION, types.Success())


async def make_single_run(path: Path) -> str:
    async with open_recorder(path, create_params=CREATE, server_url="ws://h/backtest") as rec:
        await record_single_run(rec)
        return rec.run_id


def end_run(store: RunStore, run: ActiveRun) -> None:
    """Commit ``run.ended`` with outcome ``completed``, as a recorder ends a run."""
    ended = PendingEntry(run.next_seq, time.time_ns(), Plane.RUN, RUN_ENDED, None, None, b"{}")
    store.append(run, [ended], outcome="completed")


class TrioDisk:
    """What the recorder hands to worker threads, run inline after ``latency`` seconds of trio
    time instead (:meth:`install` puts it in place of ``trio.to_thread.run_sync``).

    With the autojump clock a recorder's timing is then exact: no thread runs beside the trio
    run, so its clock alone says when a batch is committed, and a slow disk costs no real time.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> TrioDisk:
        disk = cls()
        monkeypatch.setattr(trio.to_thread, "run_sync", disk.run_sync)
        return disk

    async def run_sync(
        self, fn: Callable[..., _T], *args: object, limiter: object = None, **_: object
    ) -> _T:
        await trio.sleep(self.latency)
        return fn(*args)


@asynccontextmanager
async def replay_client(
    path: Path, run_id: str, *, raise_on_divergence: bool = True
) -> AsyncGenerator[tuple[ReplayServer, RawClient]]:
    """A replay server for ``run_id`` and a raw control client connected to it."""
    async with (
        replay_server(path, run_id, raise_on_divergence=raise_on_divergence) as server,
        trio_websocket.open_websocket_url(server.control_url) as ws,
    ):
        yield server, RawClient(ws)


class RawClient:
    """A plain trio-websocket control client that keeps every frame it reads."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.frames: list[str] = []

    async def send(self, request: types.BacktestRequest) -> None:
        await self.ws.send_message(encode(request))

    async def read_until(self, *methods: str, timeout: float = 5.0) -> list[str]:
        """Frames up to and including the first whose method (or event method) is listed."""
        got: list[str] = []
        with trio.fail_after(timeout):
            while True:
                text = await self.ws.get_message()
                assert isinstance(text, str)
                got.append(text)
                self.frames.append(text)
                if _method(text) in methods:
                    return got


def _method(text: str) -> str:
    obj = orjson.loads(text)
    if obj["method"] == "sessionEventV2":
        event = obj["params"]["event"]
        return str(event["method"]) if isinstance(event, dict) else str(event)
    return str(obj["method"])


async def read_data(ws: trio_websocket.WebSocketConnection, *, timeout: float = 5.0) -> list[str]:
    """Every data-plane message (decompressed) up to and including ``subscriptionComplete``."""
    decoder = ZstdStreamDecoder()
    got: list[str] = []
    with trio.fail_after(timeout):
        while True:
            message = await ws.get_message()
            text = decoder.decode(message).decode() if isinstance(message, bytes) else message
            got.append(text)
            if isinstance(rpc.decode_rpc(text), rpc.SubscriptionComplete):
                return got


def control_texts(path: Path, run_id: str) -> list[str]:
    from simtrio.recording import read_entries

    return [d.entry.text for d in read_entries(path, run_id) if d.entry.plane.value == "control"]


def sql(path: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement on the store file directly (to tamper, or to look)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(statement, params).fetchall()
    finally:
        conn.close()
