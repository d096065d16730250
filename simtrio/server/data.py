"""The data plane of the reference server (protocol §12.7, §9, §10).

One :class:`DataHandler` per data connection: a reader task answers subscribe / unsubscribe
requests, and one streamer writes notifications. The streamer always sends the owed event
with the lowest execution index across the connection's subscriptions, so notifications go
out in execution (hence slot) order. One exception: a subscription added while others are
already streaming replays its backlog first, which may briefly send lower slots than those
already sent; every subscription still receives its own events gap-free and in order.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from typing import TYPE_CHECKING, Final

import trio

from simtrio.server.conn import ConnectionGone
from simtrio.server.data_log import BucketKey, DataKind, Subscription
from simtrio.server.pubsub import (
    LogsRequestError,
    LogsSubscribe,
    LogsUnsubscribe,
    decode_logs_request,
)
from simtrio.wire.base58 import is_address
from simtrio.wire.rpc import (
    ACCOUNT_DIFF_SUBSCRIBE,
    INVALID_PARAMS,
    Subscribe,
    SubscribeAck,
    SubscribeError,
    SubscriptionComplete,
)
from simtrio.wire.rpc_server import (
    InvalidRpcRequest,
    UnknownRpcRequest,
    Unsubscribe,
    decode_rpc_request,
    encode_rpc,
    encode_unsubscribe_reply,
)

if TYPE_CHECKING:
    from simtrio.server.conn import Conn
    from simtrio.server.session import Session
    from simtrio.server.state import ServerState

logger = logging.getLogger(__name__)

_CLOSE_REASON: Final = "session ended"
_BEHIND_CODE: Final = 1013
_BEHIND_REASON: Final = "fell behind the retained window; reconnect and replay"


class DataHandler:
    """Serves one data-plane connection of one session."""

    def __init__(self, state: ServerState, conn: Conn, session: Session) -> None:
        self._state = state
        self._conn = conn
        self._session = session
        self._subs: dict[int, Subscription] = {}
        self._next_id = 1
        self._compressed = False
        conn.watchers.append(session.notify_progress)

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, nursery.cancel_scope)
                await self._stream()
                nursery.cancel_scope.cancel()
        finally:
            data = self._session.data
            for sub in self._subs.values():
                data.subs.discard(sub)
            self._subs.clear()
            self._session.notify_progress()

    async def _read(self, scope: trio.CancelScope) -> None:
        try:
            while True:
                message = await self._conn.receive()
                await self._handle(message)
        except ConnectionGone:
            pass
        finally:
            scope.cancel()

    async def _handle(self, message: str | bytes) -> None:
        logs = decode_logs_request(message)
        match logs:
            case LogsSubscribe():
                # A view of the program's transactions: their logs instead of themselves.
                await self._subscribe(
                    logs.id,
                    "transaction",
                    logs.address,
                    logs.replay_from_slot,
                    logs.compression,
                    logs=True,
                )
                return
            case LogsUnsubscribe():
                await self._unsubscribe(logs.id, logs.subscription)
                return
            case LogsRequestError():
                error = SubscribeError(logs.id, INVALID_PARAMS, f"invalid params: {logs.reason}")
                await self._conn.send_text(encode_rpc(error))
                return
            case None:
                pass
        request = decode_rpc_request(message)
        match request:
            case Subscribe():
                kind: DataKind = (
                    "account" if request.method == ACCOUNT_DIFF_SUBSCRIBE else "transaction"
                )
                await self._subscribe(
                    request.id,
                    kind,
                    request.program_id,
                    request.replay_from_slot,
                    request.compression,
                )
            case Unsubscribe():
                await self._unsubscribe(request.id, request.subscription)
            case UnknownRpcRequest() | InvalidRpcRequest():
                await self._conn.send_text(encode_rpc(request.error_reply()))

    async def _unsubscribe(self, request_id: int, subscription: int) -> None:
        sub = self._subs.pop(subscription, None)
        if sub is not None:
            self._session.data.subs.discard(sub)
            self._session.notify_progress()
            self._session.data.signal.notify()
        await self._conn.send_text(encode_unsubscribe_reply(request_id, sub is not None))

    async def _subscribe(
        self,
        request_id: int,
        kind: DataKind,
        program_id: str,
        replay_from_slot: int | None,
        compression: bool,
        *,
        logs: bool = False,
    ) -> None:
        if not is_address(program_id):
            error = SubscribeError(request_id, INVALID_PARAMS, "invalid program id")
            await self._conn.send_text(encode_rpc(error))
            return
        session = self._session
        key: BucketKey = (kind, program_id)
        data = session.data
        if replay_from_slot is not None and self._cut(replay_from_slot):
            # Inside the slot window a client counts on, but dropped for the byte bound: a
            # replay from the oldest retained slot would be a gap nobody could see.
            reason = (
                f"data-plane gap: slots from {replay_from_slot} on are no longer all retained"
                f" (this server keeps at most {self._state.config.retained_bytes} bytes of"
                " events per session)"
            )
            await self._conn.send_text(
                encode_rpc(SubscribeError(request_id, INVALID_PARAMS, reason))
            )
            return
        if replay_from_slot is not None:
            position = data.start_position(key, max(replay_from_slot, 0))
        elif session.ended:
            position = data.end_position(key)
        else:
            position = data.start_position(key, session.slot)
        sub_id = self._next_id
        self._next_id += 1
        if compression:
            self._compressed = True
        await self._conn.send_text(encode_rpc(SubscribeAck(request_id, sub_id)))
        # Registered only once the ack is out, so no notification can precede it.
        sub = Subscription(sub_id, key, position, self._conn, logs=logs)
        self._subs[sub_id] = sub
        data.subs.add(sub)
        data.signal.notify()
        logger.debug("subscription %d on %s: %s %s", sub_id, session.id, kind, program_id)

    def _cut(self, replay_from_slot: int) -> bool:
        """Whether a replay from there misses events the byte bound dropped early."""
        session = self._session
        window_start = session.slot - self._state.config.retained_slots
        return window_start <= replay_from_slot < session.data.cut_below

    async def _send(self, text: str) -> None:
        if self._compressed:
            await self._conn.send_compressed(text)
        else:
            await self._conn.send_text(text)

    async def _stream(self) -> None:
        session = self._session
        data = session.data
        try:
            while True:
                waiter = data.signal.event
                best: tuple[Subscription, int] | None = None
                best_index = 0
                behind = False
                for sub in list(self._subs.values()):
                    if sub.complete:
                        continue
                    event = sub.peek(data)
                    behind = behind or sub.overtaken
                    if event is not None and (best is None or event.index < best_index):
                        best, best_index = (sub, sub.position), event.index
                if behind:
                    # Events it was owed are gone: end the connection rather than skip them,
                    # so the client reconnects and replays what is retained (§12.7).
                    logger.info("data connection of %s fell behind the retained window", session.id)
                    await self._conn.close(_BEHIND_CODE, _BEHIND_REASON)
                    return
                if best is not None:
                    sub, position = best
                    event = sub.peek(data)
                    assert event is not None
                    sub.position = position + 1
                    await self._send(event.notification.text_for(sub.id, sub.logs))
                    session.notify_progress()
                    continue
                if session.ended:
                    owed = [sub for sub in self._subs.values() if not sub.complete]
                    if owed:
                        for sub in owed:
                            sub.complete = True
                            await self._send(encode_rpc(SubscriptionComplete(sub.id)))
                        session.notify_progress()
                        continue
                    if session.gone:
                        await self._conn.close(1000, _CLOSE_REASON)
                        return
                await waiter.wait()
        except ConnectionGone:
            return
