"""One data-plane connection attempt and what a subscription manager learns from it.

A :class:`Link` holds one connection's socket, zstd decoder, unread messages and fate; a
:class:`Sub` one subscription's cursor; an :class:`Outcome` how a connection ended. The
exceptions here never leave :mod:`simtrio.managed.subscription`. :func:`get_slot` asks a
session's RPC endpoint for its current slot.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from collections import deque
from typing import TYPE_CHECKING, Final, Literal, cast

import attrs
import orjson
import trio

from simtrio.core.barrier import PingWatch, probe_slot
from simtrio.errors import ConnectError, ConnectionClosed, excerpt
from simtrio.managed.subscription_kinds import Notification
from simtrio.managed.waiting import ReadPause, Waiters
from simtrio.transport.http import http_post_json
from simtrio.wire.rpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SubscribeAck,
    SubscribeError,
    SubscriptionComplete,
    UnknownRpcMessage,
    decode_rpc,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from simtrio.managed.config import ManagedConfig
    from simtrio.transport.connection import WebSocketConnection
    from simtrio.wire.compression import ZstdStreamDecoder
    from simtrio.wire.redact import Redactor
    from simtrio.wire.rpc import RpcMessage, Subscribe

logger = logging.getLogger(__name__)

_TERMINAL_SUBSCRIBE_ERRORS: Final = frozenset({INVALID_PARAMS, METHOD_NOT_FOUND})
"""JSON-RPC error codes of a subscribe reply that retrying cannot fix (protocol §9.3)."""


class SubscriptionObserver:
    """What a manager reports to its owner; the base ignores everything (standalone use)."""

    def delivery_started(self) -> None:
        """A notification is being handed to the consumer (this may block)."""

    def delivery_finished(self) -> None:
        """The consumer took the notification (or the hand-over was abandoned)."""

    def delivered(self) -> None:
        """Notifications went to the consumer without waiting (reported once per run of them)."""

    def terminal(self, index: int) -> None:
        """Subscription ``index`` (position in ``program_ids``) delivered its terminal."""

    def finished(self) -> None:
        """Every subscription delivered its terminal; nothing more will be delivered."""

    def changed(self) -> None:
        """The status changed."""


class Sub:
    __slots__ = ("complete", "cursor", "index", "program_id")

    def __init__(self, index: int, program_id: str) -> None:
        self.index = index
        self.program_id = program_id
        self.complete = False
        self.cursor: int | None = None
        """Slot of this subscription's last delivered notification."""


BUDGET_SPENT: Final = "reconnect budget spent before connecting"


class Lost(Exception):
    """Internal: the current connection has to be replaced (the message says why)."""


class Rejected(Exception):
    """Internal: the server refused a subscribe for good (invalid params, unknown method)."""


class Gap(Exception):
    """Internal: a re-subscription may have missed events the server no longer keeps."""


class ConsumerGone(Exception):
    """Internal: the standalone consumer closed its receive channel."""


@attrs.frozen
class Outcome:
    kind: Literal["finished", "stopped", "failed"]
    came_up: bool = False
    reason: str = ""
    fatal: bool = False
    healthy_until: float | None = None
    """For a connection lost on silence: when it stopped receiving."""


class Link:
    """One connection attempt: its socket, decoder, unread messages and fate."""

    __slots__ = (
        "answer_waiting",
        "by_sub",
        "conn",
        "decoder",
        "lost",
        "pause",
        "pending",
        "probe_sent",
        "scope",
        "slot_held",
        "stalled_since",
        "streaming",
        "up",
        "wake_keepalive",
        "watch",
    )

    def __init__(self, pong_timeout: float) -> None:
        self.conn: WebSocketConnection | None = None
        self.decoder: ZstdStreamDecoder | None = None
        self.pending: deque[str | bytes] = deque()
        self.by_sub: dict[int, Sub] = {}
        self.scope: trio.CancelScope | None = None
        self.lost: str | None = None
        self.pause = ReadPause()
        self.slot_held = False
        self.stalled_since: float | None = None
        self.streaming = False
        self.up = False
        """Streaming: every ack is in and the held notifications are handed over."""
        self.probe_sent: int | None = None
        """The slot of the probe Ping in flight, if any."""
        self.answer_waiting: int | None = None
        """A probe answered behind messages not handed over yet: counted once they are."""
        self.watch = PingWatch(pong_timeout)
        self.wake_keepalive = Waiters()
        """Wakes the keepalive task (a probe to send, a Pong to follow up)."""

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        if self.scope is not None:
            self.scope.cancel()

    def pong(self, payload: bytes, ahead: int, answered: Callable[[int], None]) -> None:
        """A Pong arrived with ``ahead`` messages before it still unread: a probe's answer
        is ``answered`` once everything before it is handed over."""
        slot = probe_slot(payload)
        if slot is None or slot != self.probe_sent:
            return  # a keepalive's Pong, or one for no probe of ours: it proves nothing
        self.probe_sent = None
        if ahead == 0 and not self.pending:
            # The reader is in receive_batch: everything before this Pong is handed over.
            answered(slot)
        else:
            self.answer_waiting = slot
        self.wake_keepalive.wake()

    async def subscribe(
        self,
        requests: Sequence[tuple[Sub, Subscribe]],
        *,
        silence: float,
        redactor: Redactor | None,
    ) -> list[RpcMessage]:
        """Send each subscribe in turn and wait for its ack; return what arrived meanwhile.

        Raises:
            Rejected: the server refused a subscribe for good.
            Lost: a subscribe was refused otherwise, or no reply came within ``silence``.
        """
        conn = self.conn
        assert conn is not None
        held: list[RpcMessage] = []
        for sub, request in requests:
            await conn.send_text(request.encode())
            while True:
                message = await self.next_message(silence, redactor)
                if isinstance(message, SubscribeAck) and message.id == request.id:
                    self.by_sub[message.subscription] = sub
                    break
                if isinstance(message, SubscribeError) and message.id in (request.id, None):
                    reason = (
                        f"subscribe to {excerpt(sub.program_id)} rejected with JSON-RPC error"
                        f" {message.code}: {excerpt(message.message)}"
                    )
                    if message.code in _TERMINAL_SUBSCRIBE_ERRORS:
                        raise Rejected(reason)
                    raise Lost(reason)
                if isinstance(message, Notification | SubscriptionComplete):
                    held.append(message)
                else:
                    drop(message)
        return held

    async def next_message(self, silence: float, redactor: Redactor | None) -> RpcMessage:
        """The next message, decompressed and decoded (``silence`` bounds a quiet socket)."""
        conn = self.conn
        decoder = self.decoder
        assert conn is not None
        assert decoder is not None
        while not self.pending:
            with trio.move_on_at(conn.last_received + silence):
                self.pending.extend(await conn.receive_batch())
                continue
            if trio.current_time() >= conn.last_received + silence:
                raise Lost(f"no subscribe reply within {silence:g} s")
        raw = self.pending.popleft()
        text = decoder.decode(raw) if isinstance(raw, bytes) else raw
        return decode_rpc(text if redactor is None else redactor.message(text))

    async def keepalive(
        self, config: ManagedConfig, next_probe: Callable[[Link], bytes | None]
    ) -> None:
        """Ping every interval (the first at once) and send probes; silence is a loss.

        A connection is lost when nothing at all arrived for the keepalive deadline, or when
        nothing arrived within ``data_pong_timeout`` of a ping (a stalled or half-open peer is
        found in seconds). While the reader is blocked on the consumer it reads nothing, Pongs
        included, so that time counts as neither. ``next_probe`` is asked each round for the
        payload of a probe Ping to send (None: no probe due).
        """
        conn = self.conn
        assert conn is not None
        interval = config.keepalive_interval
        miss_deadline = config.keepalive_miss_deadline
        watch = self.watch
        next_ping = trio.current_time()
        while True:
            now = trio.current_time()
            if not self.pause.active:
                quiet = now - max(conn.last_received, self.pause.ended_at)
                if quiet >= miss_deadline:
                    # A connection that went silent was healthy only until then (outage budget).
                    self.stalled_since = trio.current_time() - quiet
                    self.lose(f"missed keepalive: nothing received for {quiet:g} s")
                    return
                if watch.overdue(now, conn.last_received, self.pause.ended_at):
                    self.stalled_since = max(conn.last_received, self.pause.ended_at)
                    self.lose(f"no reply to a ping within {watch.timeout:g} s")
                    return
            payload = next_probe(self)
            if payload is None and now >= next_ping:
                payload = b""
            if payload is not None:
                try:
                    await conn.ping(payload)
                except ConnectionClosed as exc:
                    self.lose(f"keepalive ping failed: {exc}")
                    return
                watch.sent(now)
                next_ping = now + interval
            wake = next_ping
            pong_deadline = None if self.pause.active else watch.deadline(self.pause.ended_at)
            if pong_deadline is not None:
                wake = min(wake, pong_deadline)
            with trio.move_on_at(wake):
                await self.wake_keepalive.wait()

    async def not_reading(self, observer: SubscriptionObserver, waiting: Awaitable[None]) -> None:
        """Await ``waiting`` (a slow consumer, the recorder's disk) while reading nothing.

        That time is neither the peer's silence (keepalive) nor an idle subscription
        (completion drain).
        """
        observer.delivery_started()
        try:
            with self.pause:
                await waiting
        finally:
            observer.delivery_finished()


def replay_slot(
    sub: Sub, start_slot: int | None, cursor: int | None, origin: int | None, *, replay: bool
) -> int | None:
    """Where a re-subscription of ``sub`` replays from (None: omit the key).

    Its own cursor; with nothing delivered for it yet, the session's start slot, or (for a
    standalone manager) the manager-wide cursor as protocol §9.7 has it.
    """
    if not replay:
        return None
    if sub.cursor is not None:
        return sub.cursor
    if start_slot is not None:
        return start_slot
    return cursor if cursor is not None else origin


def needed_from(
    subs: Iterable[Sub], proven: int | None, origin: int | None, start_slot: int | None
) -> int | None:
    """The oldest slot a re-subscription of ``subs`` still needs events of (None: unknown)."""
    needed: int | None = None
    for sub in subs:
        if sub.complete:
            continue
        candidates = [x for x in (sub.cursor, proven, origin, start_slot) if x is not None]
        if not candidates:
            return None
        first = max(candidates)
        needed = first if needed is None else min(needed, first)
    return needed


def drop(message: RpcMessage) -> None:
    """Log and ignore a data-plane message nothing waits for."""
    if isinstance(message, UnknownRpcMessage):
        method = message.raw.get("method")
        name = excerpt(method) if isinstance(method, str) else "-"
        logger.info("dropping unknown data-plane message (method %s)", name)
    else:
        logger.info("dropping unexpected data-plane message %s", type(message).__name__)


async def poll_session_slot(
    rpc_endpoint: str, config: ManagedConfig, probe: Callable[[int], None]
) -> None:
    """Standalone: ``probe`` the session's slot (``getSlot``) every so often.

    Nobody else tells a standalone manager how far its session has run, so without this a
    subscription to a quiet program would have nothing but its start to resume from, and
    after 100 quiet slots any drop would look like a gap. A failed ``getSlot`` only makes
    the next try wait longer (up to the keepalive interval).
    """
    interval = config.standalone_probe_interval
    wait = interval
    while True:
        slot = await get_slot(rpc_endpoint, config, log=logging.DEBUG)
        if slot is None:
            wait = min(wait * 2, max(interval, config.keepalive_interval))
        else:
            wait = interval
            probe(slot)
        await trio.sleep(wait)


async def get_slot(
    rpc_endpoint: str, config: ManagedConfig, *, log: int = logging.INFO
) -> int | None:
    """The session's current slot from its RPC endpoint (``getSlot``), or None if unavailable.

    Best effort: a server without it, or any failure, leaves the caller without a slot (and a
    log record at level ``log``).
    """
    body = b'{"jsonrpc":"2.0","id":1,"method":"getSlot"}'
    try:
        status, reply = await http_post_json(
            rpc_endpoint,
            body,
            timeout=config.connect_timeout,
            ssl_context=config.ssl_context,
            max_body=64 * 1024,
        )
    except ConnectError as exc:
        logger.log(log, "getSlot failed: %s", exc)
        return None
    if status != 200:
        logger.log(log, "getSlot answered with HTTP %d", status)
        return None
    try:
        parsed: object = orjson.loads(reply)
    except orjson.JSONDecodeError:
        logger.log(log, "getSlot answered with something that is not JSON")
        return None
    slot = cast("dict[str, object]", parsed).get("result") if isinstance(parsed, dict) else None
    if isinstance(slot, int) and not isinstance(slot, bool):
        return slot
    logger.log(log, "getSlot answered without a slot")
    return None
