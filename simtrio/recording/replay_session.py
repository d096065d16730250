"""Replaying one (sub-)session: its place in the track, and its data plane.

Each session of a replayed run has a :class:`SessionReplay`: the requests routed to it, the
step it has reached, the notifications posted so far and the live subscriptions they go to.
:func:`serve_data` serves one data-plane connection (``/backtest/<session_id>``) from it:
subscriptions are acknowledged, caught up on what was posted (honouring ``replayFromSlot``) and
then fed live, each connection through one sender so its messages (and zstd stream) stay in
order.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import math
from typing import TYPE_CHECKING, Final

import attrs
import trio
import trio_websocket

from simtrio.wire import backtest_errors, codec, rpc, rpc_server, types
from simtrio.wire.compression import ZstdStreamEncoder

if TYPE_CHECKING:
    from simtrio.recording.errors import ReplayDivergence
    from simtrio.recording.script import DataItem, Track

Received = tuple["types.BacktestRequest | types.UnknownRequest", str]
"""A request routed to a session: as decoded, and as the client wrote it."""

_NOTIFICATION_OF: Final = {
    rpc.ACCOUNT_DIFF_SUBSCRIBE: rpc.ACCOUNT_DIFF_NOTIFICATION,
    rpc.TRANSACTION_SUBSCRIBE: rpc.TRANSACTION_NOTIFICATION,
    rpc.LOGS_SUBSCRIBE: rpc.LOGS_NOTIFICATION,
}


@attrs.define(eq=False)
class DataSub:
    id: int
    kind: str
    program_id: str
    conn: DataConn
    done: bool = False


@attrs.frozen
class _Out:
    text: str
    notification: bool
    written: trio.Event | None = None


class DataConn:
    """One data-plane connection: a single sender keeps its messages (and zstd stream) in order."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.compressed = False
        self.next_id = 1
        self.closed = False
        self._tx, self._rx = trio.open_memory_channel[_Out](math.inf)
        self._encoder: ZstdStreamEncoder | None = None

    def queue(self, text: str, *, notification: bool, wait: bool = False) -> trio.Event | None:
        if self.closed:
            return None
        written = trio.Event() if wait else None
        self._tx.send_nowait(_Out(text, notification, written))
        return written

    async def sender(self) -> None:
        try:
            async for out in self._rx:
                payload: str | bytes = out.text
                if out.notification and self.compressed:
                    if self._encoder is None:
                        self._encoder = ZstdStreamEncoder()
                    payload = self._encoder.encode(out.text)
                await self.ws.send_message(payload)
                if out.written is not None:
                    out.written.set()
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
            pass
        finally:
            self.closed = True
            # Nobody waits forever on a message that can no longer be written.
            with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                while True:
                    out = self._rx.receive_nowait()
                    if out.written is not None:
                        out.written.set()


class SessionReplay:
    """Replay state of one (sub-)session: its track position and its live subscriptions."""

    def __init__(self, track: Track, parallel: bool) -> None:
        self.track = track
        self.parallel = parallel
        self.requests_tx, self.requests_rx = trio.open_memory_channel[Received](math.inf)
        self.step = 0
        self.last_seq = track.start_seq
        self.finished = False
        self.completed = False
        self.divergence: ReplayDivergence | None = None
        self.posted: list[DataItem] = []
        self.subs: list[DataSub] = []
        self.first_program: dict[str, str] = {}
        self.rpc_step = 0
        self.rpc_divergence: ReplayDivergence | None = None

    def frame(self, response: types.Error | types.Success) -> str:
        """A frame for this session: wrapped and numbered on a parallel connection."""
        if not self.parallel:
            return codec.encode_response(response)
        self.last_seq += 1
        return codec.encode_response(
            types.SessionEventV2(self.track.session_id, self.last_seq, response)
        )

    def error_frame(self, message: str) -> str:
        return self.frame(types.Error(backtest_errors.InvalidRequest(message)))

    def takes(self, sub: DataSub, item: DataItem) -> bool:
        if sub.done or item.kind != sub.kind:
            return False
        if item.topic is not None:
            return item.topic == sub.program_id
        return self.first_program.get(sub.kind) == sub.program_id

    async def post(self, item: DataItem) -> None:
        """Hand a recorded notification to the live subscriptions and wait until it is written."""
        self.posted.append(item)
        waits = [
            sub.conn.queue(_renumbered(item, sub.id), notification=True, wait=True)
            for sub in self.subs
            if self.takes(sub, item)
        ]
        for written in waits:
            if written is not None:
                await written.wait()

    async def complete_data(self) -> None:
        """Terminals for every live subscription (the session has completed or closed)."""
        if self.completed:
            return
        self.completed = True
        waits: list[trio.Event | None] = []
        for sub in self.subs:
            if not sub.done:
                sub.done = True
                terminal = rpc_server.encode_rpc(rpc.SubscriptionComplete(sub.id))
                waits.append(sub.conn.queue(terminal, notification=True, wait=True))
        for written in waits:
            if written is not None:
                await written.wait()

    def subscribe(self, conn: DataConn, request: rpc.Subscribe) -> None:
        """Ack, catch up on what was posted so far, then go live (all without a checkpoint)."""
        kind = _NOTIFICATION_OF.get(request.method, rpc.TRANSACTION_NOTIFICATION)
        sub = DataSub(conn.next_id, kind, request.program_id, conn)
        conn.next_id += 1
        if request.compression:
            conn.compressed = True
        self.first_program.setdefault(kind, request.program_id)
        conn.queue(rpc_server.encode_rpc(rpc.SubscribeAck(request.id, sub.id)), notification=False)
        start = request.replay_from_slot
        for item in self.posted:
            if self.takes(sub, item) and (start is None or item.slot >= start):
                conn.queue(_renumbered(item, sub.id), notification=True)
        self.subs.append(sub)
        if self.completed:
            sub.done = True
            terminal = rpc_server.encode_rpc(rpc.SubscriptionComplete(sub.id))
            conn.queue(terminal, notification=True)

    def drop(self, conn: DataConn) -> None:
        self.subs = [sub for sub in self.subs if sub.conn is not conn]


def _renumbered(item: DataItem, subscription: int) -> str:
    """The recorded text, with the subscription id of this connection if it differs."""
    if item.message.subscription == subscription:
        return item.text
    return rpc_server.encode_rpc(attrs.evolve(item.message, subscription=subscription))


async def serve_data(ws: trio_websocket.WebSocketConnection, session: SessionReplay) -> None:
    conn = DataConn(ws)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.sender)
            while True:
                try:
                    message = await ws.get_message()
                except trio_websocket.ConnectionClosed:
                    break
                request = rpc_server.decode_rpc_request(message)
                if isinstance(request, rpc.Subscribe):
                    session.subscribe(conn, request)
                elif isinstance(request, rpc_server.Unsubscribe):
                    for sub in session.subs:
                        if sub.conn is conn and sub.id == request.subscription:
                            sub.done = True
                    conn.queue(rpc_server.encode_unsubscribe_reply(request.id), notification=False)
                else:
                    conn.queue(rpc_server.encode_rpc(request.error_reply()), notification=False)
            nursery.cancel_scope.cancel()
    finally:
        session.drop(conn)
