"""Data-plane subscriptions (protocol §9, §10): reconnecting managers, per session and standalone.

A :class:`SubscriptionManager` owns one data-plane connection at a time and carries one
subscription per program id on it. It subscribes them one after another, decodes the zstd
stream, hands notifications to a bounded consumer (a slow consumer back-pressures the socket
because the manager simply stops reading), remembers per subscription the slot of its last
delivered notification, and after a loss reconnects and re-subscribes each subscription with
``replayFromSlot`` at its own cursor. It ends when every subscription has delivered its
terminal marker, or gives up after protocol §8.4.

Why a cursor per subscription rather than one per connection (protocol §9.7): a server may send
a later-subscribed subscription's replay below slots it already sent for another one on the same
connection (a re-subscription replays its backlog first). With one shared cursor, a loss in
between would re-subscribe the lagging subscription from the other one's higher slot and skip
its events in between. Each subscription's own notifications do arrive in slot order, so its
own last slot is always a gap-free replay point.

:class:`SessionSubscriptions` groups the managers of one (sub-)session and runs the completion
drain; :func:`open_account_diff_subscription` / :func:`open_transaction_subscription` are the
standalone entry points.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Generic, Literal, NoReturn, TypeAlias, TypeVar, cast

import attrs
import orjson
import trio

from simtrio.core.backoff import ReconnectState
from simtrio.core.barrier import (
    PingWatch,
    Proofs,
    gap_between,
    lags_behind,
    probe_due,
    probe_payload,
    probe_slot,
)
from simtrio.core.drain import STALLED_MESSAGE, DrainTracker
from simtrio.errors import (
    ConnectError,
    ConnectionClosed,
    ContinueSendFailed,
    InvalidParams,
    ProtocolError,
    SubscriptionFailed,
    excerpt,
)
from simtrio.events import AccountDiff, ProgramLogs, Transaction
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.queue import (
    HANDOVER_CHUNK,
    QueueReceiveChannel,
    QueueSendChannel,
    open_queue,
)
from simtrio.managed.status import StatusCell
from simtrio.managed.waiting import Waiters
from simtrio.transport.connection import connect
from simtrio.transport.http import http_post_json
from simtrio.wire.compression import ZstdStreamDecoder
from simtrio.wire.construct import plain_constructor
from simtrio.wire.rpc import (
    ACCOUNT_DIFF_SUBSCRIBE,
    INVALID_PARAMS,
    LOGS_SUBSCRIBE,
    METHOD_NOT_FOUND,
    TRANSACTION_SUBSCRIBE,
    AccountDiffNotification,
    LogsNotification,
    RpcMessage,
    Subscribe,
    SubscribeAck,
    SubscribeError,
    SubscriptionComplete,
    TransactionNotification,
    UnknownRpcMessage,
    decode_rpc,
)
from simtrio.wire.urls import http_to_ws_url, split_ws_url

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from simtrio.events import Completed
    from simtrio.managed.coordinator import ReconnectCoordinator
    from simtrio.managed.streams import EventStream
    from simtrio.transport.connection import WebSocketConnection
    from simtrio.wire.redact import Redactor

__all__ = [
    "ACCOUNT_DIFFS",
    "TRANSACTIONS",
    "DataSubscription",
    "NotificationRecorder",
    "SessionGate",
    "SessionSubscriptions",
    "SubscriptionKind",
    "SubscriptionManager",
    "SubscriptionObserver",
    "open_account_diff_subscription",
    "open_transaction_subscription",
]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=AccountDiff | Transaction | ProgramLogs)

_Notification = AccountDiffNotification | TransactionNotification | LogsNotification
_NOTIFICATION_TYPES: Final = frozenset(
    {AccountDiffNotification, TransactionNotification, LogsNotification}
)
_TERMINAL_SUBSCRIBE_ERRORS: Final = frozenset({INVALID_PARAMS, METHOD_NOT_FOUND})
"""JSON-RPC error codes of a subscribe reply that retrying cannot fix (protocol §9.3)."""

NotificationRecorder: TypeAlias = Callable[[_Notification, str], Awaitable[None]]
"""Called with each notification and its subscription's program id once it was handed over."""


# --------------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------------


@attrs.frozen
class SubscriptionKind(Generic[E]):
    """What a manager subscribes to and how a notification becomes a driver event.

    ``wrap`` gets the notification and its subscription's program id.
    """

    label: str
    method: str
    wrap: Callable[[_Notification, str], E | None]


_new_account_diff: Final[Callable[[AccountDiffNotification], AccountDiff]] = plain_constructor(
    AccountDiff
)
_new_transaction: Final[Callable[[TransactionNotification], Transaction]] = plain_constructor(
    Transaction
)


def _wrap_account_diff(notification: _Notification, program_id: str) -> AccountDiff | None:
    if type(notification) is AccountDiffNotification:
        return _new_account_diff(notification)
    return None


def _wrap_transaction(notification: _Notification, program_id: str) -> Transaction | None:
    if type(notification) is TransactionNotification:
        return _new_transaction(notification)
    return None


def _wrap_logs(notification: _Notification, program_id: str) -> ProgramLogs | None:
    if type(notification) is LogsNotification:
        return ProgramLogs(
            notification.slot,
            notification.signature,
            notification.err,
            notification.logs,
            program_id,
        )
    return None


ACCOUNT_DIFFS: Final = SubscriptionKind[AccountDiff](
    "account-diff", ACCOUNT_DIFF_SUBSCRIBE, _wrap_account_diff
)
TRANSACTIONS: Final = SubscriptionKind[Transaction](
    "transaction", TRANSACTION_SUBSCRIBE, _wrap_transaction
)
LOGS: Final = SubscriptionKind[ProgramLogs]("logs", LOGS_SUBSCRIBE, _wrap_logs)


def _check_program_ids(program_ids: Sequence[str]) -> tuple[str, ...]:
    if isinstance(program_ids, str):
        raise InvalidParams("program_ids must be a sequence of program ids, not a single str")
    ids = tuple(program_ids)
    if not ids:
        raise InvalidParams("program_ids must not be empty")
    for program_id in ids:
        if not isinstance(program_id, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidParams(f"program ids must be str, got {type(program_id).__name__}")
    return ids


# --------------------------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------------------------


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


class _Sub:
    __slots__ = ("complete", "cursor", "index", "program_id")

    def __init__(self, index: int, program_id: str) -> None:
        self.index = index
        self.program_id = program_id
        self.complete = False
        self.cursor: int | None = None
        """Slot of this subscription's last delivered notification."""


_BUDGET_SPENT: Final = "reconnect budget spent before connecting"


class _Lost(Exception):
    """Internal: the current connection has to be replaced (the message says why)."""


class _Rejected(Exception):
    """Internal: the server refused a subscribe for good (invalid params, unknown method)."""


class _Gap(Exception):
    """Internal: a re-subscription may have missed events the server no longer keeps."""


class _ConsumerGone(Exception):
    """Internal: the standalone consumer closed its receive channel."""


@attrs.frozen
class _Outcome:
    kind: Literal["finished", "stopped", "failed"]
    came_up: bool = False
    reason: str = ""
    fatal: bool = False
    healthy_until: float | None = None
    """For a connection lost on silence: when it stopped receiving."""


class _Link:
    """One connection attempt: its socket, decoder, unread messages and fate."""

    __slots__ = (
        "answer_waiting",
        "by_sub",
        "conn",
        "decoder",
        "delivering",
        "keepalive",
        "lost",
        "pending",
        "probe_sent",
        "resumed_at",
        "scope",
        "slot_held",
        "stalled_since",
        "streaming",
        "up",
        "watch",
    )

    def __init__(self, pong_timeout: float) -> None:
        self.conn: WebSocketConnection | None = None
        self.decoder: ZstdStreamDecoder | None = None
        self.pending: deque[str | bytes] = deque()
        self.by_sub: dict[int, _Sub] = {}
        self.scope: trio.CancelScope | None = None
        self.lost: str | None = None
        self.delivering = False
        self.resumed_at = -math.inf
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
        self.keepalive = Waiters()
        """Wakes the keepalive task (a probe to send, a Pong to follow up)."""

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        if self.scope is not None:
            self.scope.cancel()


class SubscriptionManager(Generic[E]):
    """One reconnecting data-plane connection carrying one subscription per program id.

    ``deliver`` is awaited for every notification, in order; it should block while the
    consumer is behind (a bounded channel) so that the socket is back-pressured.
    ``deliver_nowait``, when given, is tried first: it queues a notification if there is room
    (returning False if not), which lets a whole read be handed over without a task switch per
    notification; ``deliver`` then only runs for one that found the consumer behind. A session-bound
    manager passes its session's ``start_slot``: a re-subscription with nothing delivered yet
    then replays from there instead of from "now".
    """

    def __init__(
        self,
        *,
        rpc_endpoint: str,
        kind: SubscriptionKind[E],
        program_ids: Sequence[str],
        redactor: Redactor | None = None,
        config: ManagedConfig,
        deliver: Callable[[E, int], Awaitable[None]],
        deliver_nowait: Callable[[E, int], bool] | None = None,
        start_slot: int | None = None,
        max_total: float | None = None,
        coordinator: ReconnectCoordinator | SessionGate | None = None,
        observer: SubscriptionObserver | None = None,
        record: NotificationRecorder | None = None,
        position: Callable[[], int | None] | None = None,
        first_connect_max_total: float | None = None,
    ) -> None:
        self._rpc_endpoint = rpc_endpoint
        self._position = position
        self._first_max_total = first_connect_max_total
        self._record = record
        self._kind = kind
        self._subs = tuple(_Sub(i, p) for i, p in enumerate(_check_program_ids(program_ids)))
        self._config = config
        self._redactor = redactor
        self._deliver = deliver
        self._deliver_nowait = deliver_nowait
        self._start_slot = start_slot
        self._max_total = max_total if max_total is not None else config.max_total_for(None)
        self._coordinator = coordinator
        self._observer = observer if observer is not None else SubscriptionObserver()
        self.status = StatusCell()
        self.cursor: int | None = None
        """Slot of the last delivered notification (any subscription of this manager)."""
        self.finished = False
        self.failure: SubscriptionFailed | None = None
        self.connections = 0
        """Connection attempts made so far (for diagnostics and tests)."""
        self.probes = 0
        """Probe Pings sent so far (for diagnostics and tests)."""
        self.origin: int | None = position() if position is not None else None
        """The slot this manager's stream starts from: the control plane's slot when it was
        created (session-bound), or the session's slot at the first subscribe (standalone)."""
        self._proofs = Proofs()
        self._wanted: int | None = None
        self._link: _Link | None = None

    def __repr__(self) -> str:
        return (
            f"<SubscriptionManager {self._kind.label} x{len(self._subs)}"
            f" {self.status.value.name} cursor={self.cursor}>"
        )

    @property
    def kind(self) -> SubscriptionKind[E]:
        return self._kind

    @property
    def program_ids(self) -> tuple[str, ...]:
        return tuple(sub.program_id for sub in self._subs)

    @property
    def cursors(self) -> tuple[int | None, ...]:
        """Per subscription (in ``program_ids`` order), the slot of its last notification."""
        return tuple(sub.cursor for sub in self._subs)

    @property
    def incomplete(self) -> tuple[int, ...]:
        """Indexes of the subscriptions still waiting for their terminal."""
        return tuple(sub.index for sub in self._subs if not sub.complete)

    # -- the data-plane barrier ----------------------------------------------------------------

    @property
    def proven(self) -> int | None:
        """Every event of a slot below this one has been handed over (data-plane barrier).

        Only evidence that cannot be early counts: a confirmed probe, or a notification.
        """
        return self._proofs.proven

    @property
    def proven_position(self) -> int | None:
        """What the barrier compares with the control plane's slot (None: nothing to prove)."""
        if self.finished:
            return None
        proven = self.proven
        return proven if proven is not None else self.origin

    @property
    def consumer_behind(self) -> bool:
        """Blocked handing a notification to a consumer that is behind (or to the recorder)."""
        link = self._link
        return link is not None and link.delivering

    def probe(self, slot: int) -> None:
        """Ask for proof that everything up to ``slot`` arrived (a Ping; returns at once)."""
        if self._wanted is None or slot > self._wanted:
            self._wanted = slot
        link = self._link
        if link is not None and link.up and link.probe_sent is None and self._probe_due():
            link.keepalive.wake()

    def _probe_due(self) -> bool:
        return probe_due(self._wanted, self.proven_position, self._config.data_lag_window)

    def _answered(self, slot: int) -> None:
        """A probe's Pong, every message before it handed over: a claim, confirming the last."""
        if self._proofs.answered(slot):
            self._observer.changed()

    def _withdraw(self, slot: int) -> None:
        """A new notification below what was claimed or proven: the claim was early.

        A server may answer a Ping ahead of notifications it still had to send (after a stall,
        say); the claim then said too much. Dropping it costs one more probe.
        """
        if self._proofs.withdraw(slot):
            self._observer.changed()
            logger.warning(
                "%s subscription: a notification of slot %d arrived after a confirmed proof"
                " beyond it; the proof falls back",
                self._kind.label,
                slot,
            )

    def _on_pong(self, link: _Link, payload: bytes, ahead: int) -> None:
        slot = probe_slot(payload)
        if slot is None or slot != link.probe_sent:
            return  # a keepalive's Pong, or one for no probe of ours: it proves nothing
        link.probe_sent = None
        if ahead == 0 and not link.pending:
            # The reader is in receive_batch: everything before this Pong is handed over.
            self._answered(slot)
        else:
            link.answer_waiting = slot
        link.keepalive.wake()

    def _needed_from(self) -> int | None:
        """The oldest slot a re-subscription still needs events of (None: unknown)."""
        needed: int | None = None
        for sub in self._subs:
            if sub.complete:
                continue
            candidates = [
                x
                for x in (sub.cursor, self._proofs.proven, self.origin, self._start_slot)
                if x is not None
            ]
            if not candidates:
                return None
            first = max(candidates)
            needed = first if needed is None else min(needed, first)
        return needed

    async def _current_slot(self) -> int | None:
        """The session's slot now: the control plane's, else the session RPC's ``getSlot``."""
        if self._position is not None:
            return self._position()
        return await _get_slot(self._rpc_endpoint, self._config)

    # -- the reconnect loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Run until every subscription delivered its terminal, or the consumer went away.

        Raises:
            SubscriptionFailed: the manager gave up (protocol §8.4); status is ``FAILED``.
        """
        try:
            ws_url = http_to_ws_url(self._rpc_endpoint)
        except InvalidParams as exc:
            self._give_up(str(exc))
        try:
            await self._reconnect_loop(ws_url)
        finally:
            # Cancelled or finished: nothing is connected any more (FAILED stays FAILED).
            self._set(ConnectionStatus.DOWN)

    async def _reconnect_loop(self, ws_url: str) -> None:
        state = ReconnectState(
            self._config.backoff, self._max_total, first_max_total=self._first_max_total
        )
        rng = self._config.make_rng()
        failures = 0  # consecutive failed attempts since the last UP
        last_error = ""
        while True:
            state.attempt_started(trio.current_time())
            gated = (
                self._coordinator is not None and failures >= self._config.coordinator_fast_attempts
            )
            outcome = await self._attempt(ws_url, state, gated=gated)
            if outcome.kind != "failed":
                return
            now = trio.current_time()
            if outcome.came_up:
                state.connection_lost(now, healthy_until=outcome.healthy_until)
                failures = 0
            else:
                state.attempt_failed(now)
                failures += 1
            if outcome.fatal:
                self._give_up(outcome.reason)
            delay = state.next_delay(now, rng)
            if delay is None:
                # An attempt cut short by the budget says nothing: name the failure before it.
                last = last_error if outcome.reason == _BUDGET_SPENT and last_error else None
                self._give_up(f"stopped reconnecting; last error: {last or outcome.reason}")
            if outcome.reason != _BUDGET_SPENT:
                last_error = outcome.reason
            self._set(ConnectionStatus.RECONNECTING)
            logger.warning(
                "%s subscription: %s; retrying in %.3f s", self._kind.label, outcome.reason, delay
            )
            await trio.sleep(delay)

    def _give_up(self, reason: str) -> NoReturn:
        error = SubscriptionFailed(f"{self._kind.label} subscription gave up: {reason}")
        self.failure = error
        logger.error("%s", error)
        self._set(ConnectionStatus.FAILED, error)
        raise error

    def _set(self, status: ConnectionStatus, failure: BaseException | None = None) -> None:
        if self.status.value is not status:
            self.status.set(status, failure)
            self._observer.changed()

    async def _attempt(self, ws_url: str, state: ReconnectState, *, gated: bool) -> _Outcome:
        """One connection: park if gated, connect, subscribe, stream until it ends."""
        replay = self.connections > 0
        self.connections += 1
        deadline = state.deadline()
        deadline = math.inf if deadline is None else deadline
        coordinator = self._coordinator
        config = self._config
        if not replay and self.origin is None and self._start_slot is None:
            # Standalone: where the stream starts, so that a drop before the first
            # notification resumes from here rather than from "now".
            with trio.move_on_at(deadline):
                self.origin = await _get_slot(self._rpc_endpoint, config)
        link = _Link(config.data_pong_timeout)
        self._proofs.connection_changed()
        try:
            with trio.move_on_at(deadline):
                if gated and coordinator is not None:
                    await coordinator.acquire_slot()
                    link.slot_held = True
                link.conn = await connect(
                    ws_url,
                    connect_timeout=config.connect_timeout,
                    max_message_size=config.max_message_size,
                    ssl_context=config.ssl_context,
                )
            if link.conn is None:
                return _Outcome("failed", reason=_BUDGET_SPENT)
            state.connected()  # the first-connect budget no longer applies to the handshake
            opened = state.deadline()
            deadline = math.inf if opened is None else opened
            link.decoder = ZstdStreamDecoder(config.max_message_size)
            link.conn.on_pong = lambda payload, ahead: self._on_pong(link, payload, ahead)
            self._link = link
            return await self._serve(link, state, deadline, replay=replay)
        except ConnectError as exc:
            return _Outcome("failed", reason=str(exc), fatal=exc.fatal)
        finally:
            if self._link is link:
                self._link = None
            if link.slot_held and coordinator is not None:
                coordinator.release_slot()
            if link.conn is not None:
                await link.conn.abort()
            if link.streaming and coordinator is not None:
                coordinator.stream_stopped()

    async def _serve(
        self, link: _Link, state: ReconnectState, deadline: float, *, replay: bool
    ) -> _Outcome:
        conn = link.conn
        assert conn is not None
        came_up = False
        consumer_gone = False
        rejected = False
        async with trio.open_nursery() as nursery:
            link.scope = nursery.cancel_scope
            nursery.start_soon(self._keepalive, link)
            held: list[RpcMessage] = []
            try:
                with trio.move_on_at(deadline) as budget:
                    held = await self._handshake(link, replay=replay)
                if budget.cancelled_caught:
                    raise _Lost("reconnect budget spent during the subscribe handshake")
                if replay:
                    # Not reading meanwhile is our doing, not the peer's silence.
                    link.delivering = True
                    try:
                        await self._check_gap()
                    finally:
                        link.delivering = False
                        link.resumed_at = trio.current_time()
                came_up = True
                self._up(link, state)
                for message in held:
                    await self._handle(link, message)
                link.up = True
                link.keepalive.wake()
                if self._position is None:
                    nursery.start_soon(self._poll_position)
                await self._stream(link, replay=replay)
            except (ConnectionClosed, ProtocolError, _Lost) as exc:
                # A corrupt compressed message is quoted as received: take the key out of it.
                reason = str(exc)
                link.lose(reason if self._redactor is None else self._redactor.text(reason))
            except (_Rejected, _Gap) as exc:
                reason = str(exc)
                link.lose(reason if self._redactor is None else self._redactor.text(reason))
                rejected = True
            except _ConsumerGone:
                consumer_gone = True
            nursery.cancel_scope.cancel()
        if consumer_gone:
            return _Outcome("stopped")
        if link.lost is not None:
            return _Outcome(
                "failed",
                came_up=came_up,
                reason=link.lost,
                fatal=rejected,
                healthy_until=link.stalled_since,
            )
        # Every terminal is in: the consumer learns it now, the socket closes afterwards.
        self.finished = True
        self._set(ConnectionStatus.DOWN)
        self._observer.finished()
        with trio.CancelScope(shield=True):  # an orderly Close even while the owner winds down
            await conn.aclose(self._config.graceful_close_timeout)
        return _Outcome("finished", came_up=True)

    async def _check_gap(self) -> None:
        """After re-subscribing: fail if the server may have dropped events still needed.

        Checked once the acks are in, against the session's slot then: from that point the
        server keeps what the new subscriptions are owed.
        """
        needed = self._needed_from()
        if needed is None:
            return
        current = await self._current_slot()
        retained = self._config.server_retained_slots
        if gap_between(current, needed, retained):
            raise _Gap(
                f"data-plane gap: the session is at slot {current} and the server keeps only"
                f" the last {retained} slots, but this subscription still needed slot {needed}"
                " onward; notifications in between may be missing"
            )

    def _up(self, link: _Link, state: ReconnectState) -> None:
        state.connection_up(trio.current_time())
        coordinator = self._coordinator
        if coordinator is not None:
            coordinator.stream_started()
            link.streaming = True
            if link.slot_held:
                link.slot_held = False
                coordinator.release_slot()
        self._set(ConnectionStatus.UP)

    async def _keepalive(self, link: _Link) -> None:
        """Ping every interval (the first at once) and send probes; silence is a loss.

        A connection is lost when nothing at all arrived for the keepalive deadline, or when
        nothing arrived within ``data_pong_timeout`` of a ping (a stalled or half-open peer is
        found in seconds). While the reader is blocked on the consumer it reads nothing, Pongs
        included, so that time counts as neither.
        """
        conn = link.conn
        assert conn is not None
        config = self._config
        interval = config.keepalive_interval
        miss_deadline = config.keepalive_miss_deadline
        watch = link.watch
        next_ping = trio.current_time()
        while True:
            now = trio.current_time()
            if not link.delivering:
                quiet = now - max(conn.last_received, link.resumed_at)
                if quiet >= miss_deadline:
                    # A connection that went silent was healthy only until then (outage budget).
                    link.stalled_since = trio.current_time() - quiet
                    link.lose(f"missed keepalive: nothing received for {quiet:g} s")
                    return
                if watch.overdue(now, conn.last_received, link.resumed_at):
                    link.stalled_since = max(conn.last_received, link.resumed_at)
                    link.lose(f"no reply to a ping within {watch.timeout:g} s")
                    return
            payload: bytes | None = None
            wanted = self._wanted
            if link.up and link.probe_sent is None and wanted is not None and self._probe_due():
                link.probe_sent = wanted
                payload = probe_payload(wanted)
                self.probes += 1
            elif now >= next_ping:
                payload = b""
            if payload is not None:
                try:
                    await conn.ping(payload)
                except ConnectionClosed as exc:
                    link.lose(f"keepalive ping failed: {exc}")
                    return
                watch.sent(now)
                next_ping = now + interval
            wake = next_ping
            pong_deadline = None if link.delivering else watch.deadline(link.resumed_at)
            if pong_deadline is not None:
                wake = min(wake, pong_deadline)
            with trio.move_on_at(wake):
                await link.keepalive.wait()

    async def _poll_position(self) -> None:
        """Standalone: probe the session's slot (``getSlot``) every so often.

        Nobody else tells a standalone manager how far its session has run, so without this a
        subscription to a quiet program would have nothing but its start to resume from, and
        after 100 quiet slots any drop would look like a gap. A failed ``getSlot`` only makes
        the next try wait longer (up to the keepalive interval).
        """
        config = self._config
        interval = config.standalone_probe_interval
        wait = interval
        while True:
            slot = await _get_slot(self._rpc_endpoint, config, log=logging.DEBUG)
            if slot is None:
                wait = min(wait * 2, max(interval, config.keepalive_interval))
            else:
                wait = interval
                self.probe(slot)
            await trio.sleep(wait)

    # -- subscribing ---------------------------------------------------------------------------

    def _replay_slot(self, sub: _Sub, *, replay: bool) -> int | None:
        """Where a re-subscription of ``sub`` replays from (None: omit the key).

        Its own cursor; with nothing delivered for it yet, the session's start slot, or (for a
        standalone manager) the manager-wide cursor as protocol §9.7 has it.
        """
        if not replay:
            return None
        if sub.cursor is not None:
            return sub.cursor
        if self._start_slot is not None:
            return self._start_slot
        return self.cursor if self.cursor is not None else self.origin

    async def _handshake(self, link: _Link, *, replay: bool) -> list[RpcMessage]:
        """Subscribe every incomplete subscription in turn; return what arrived meanwhile."""
        conn = link.conn
        assert conn is not None
        held: list[RpcMessage] = []
        request_id = 0
        for sub in self._subs:
            if sub.complete:
                continue
            request_id += 1
            replay_slot = self._replay_slot(sub, replay=replay)
            request = Subscribe(self._kind.method, request_id, sub.program_id, replay_slot)
            await conn.send_text(request.encode())
            while True:
                message = await self._next(link, self._config.handshake_timeout)
                if isinstance(message, SubscribeAck) and message.id == request_id:
                    link.by_sub[message.subscription] = sub
                    break
                if isinstance(message, SubscribeError) and message.id in (request_id, None):
                    reason = (
                        f"subscribe to {excerpt(sub.program_id)} rejected with JSON-RPC error"
                        f" {message.code}: {excerpt(message.message)}"
                    )
                    if message.code in _TERMINAL_SUBSCRIBE_ERRORS:
                        raise _Rejected(reason)
                    raise _Lost(reason)
                if isinstance(message, _Notification | SubscriptionComplete):
                    held.append(message)
                else:
                    self._drop(message)
        return held

    async def _next(self, link: _Link, silence: float | None) -> RpcMessage:
        """The next message, decompressed and decoded (``silence`` bounds a quiet socket)."""
        conn = link.conn
        decoder = link.decoder
        assert conn is not None
        assert decoder is not None
        while not link.pending:
            if silence is None:
                link.pending.extend(await conn.receive_batch())
                continue
            with trio.move_on_at(conn.last_received + silence):
                link.pending.extend(await conn.receive_batch())
                continue
            if trio.current_time() >= conn.last_received + silence:
                raise _Lost(f"no subscribe reply within {silence:g} s")
        raw = link.pending.popleft()
        text = decoder.decode(raw) if isinstance(raw, bytes) else raw
        return decode_rpc(text if self._redactor is None else self._redactor.message(text))

    # -- delivering ----------------------------------------------------------------------------

    async def _stream(self, link: _Link, *, replay: bool) -> None:
        """The steady state: every message until each subscription has its terminal.

        A notification the consumer has room for is handed over on the spot, so a whole read
        goes through without a task switch per message (this task still yields every
        ``HANDOVER_CHUNK`` of them); everything else takes the general path of :meth:`_handle`.
        """
        conn = link.conn
        decoder = link.decoder
        assert conn is not None
        assert decoder is not None
        pending = link.pending
        by_sub = link.by_sub
        subs = self._subs
        wrap = self._kind.wrap
        nowait = self._deliver_nowait
        record = self._record
        observer = self._observer
        decode = decoder.decode
        redactor = self._redactor
        proofs = self._proofs
        run = 0  # notifications handed over since the last report to the observer
        while True:
            if not pending:
                if run:
                    run = 0
                    observer.delivered()
                if link.answer_waiting is not None:
                    self._answered(link.answer_waiting)
                    link.answer_waiting = None
                if all(sub.complete for sub in subs):
                    return
                pending.extend(await conn.receive_batch())
                continue
            raw = pending.popleft()
            text = decode(raw) if type(raw) is bytes else raw
            message = decode_rpc(text if redactor is None else redactor.message(text))
            if nowait is not None and type(message) in _NOTIFICATION_TYPES:
                notification = cast("_Notification", message)
                sub = by_sub.get(notification.subscription)
                event = (
                    wrap(notification, sub.program_id)
                    if sub is not None and not sub.complete
                    else None
                )
                if event is not None and sub is not None:
                    try:
                        queued = nowait(event, len(text))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        raise _ConsumerGone from None
                    if queued:
                        previous = sub.cursor
                        slot = sub.cursor = self.cursor = notification.slot
                        if slot < proofs.ceiling and (previous is None or slot > previous):
                            self._withdraw(slot)
                        if record is not None:
                            await self._recorded(link, record, notification, sub.program_id)
                        run += 1
                        if run >= HANDOVER_CHUNK:
                            run = 0
                            observer.delivered()
                            await trio.lowlevel.checkpoint()
                        continue
            if run:
                run = 0
                observer.delivered()
            await self._handle(link, message, len(text))
            if all(sub.complete for sub in subs):
                return

    async def _handle(self, link: _Link, message: RpcMessage, size: int = 0) -> None:
        """Deliver or route one message; ``size`` is its length, for the byte bound."""
        if isinstance(
            message, AccountDiffNotification | TransactionNotification | LogsNotification
        ):
            sub = link.by_sub.get(message.subscription)
            if sub is None or sub.complete:
                logger.debug("dropping notification for subscription %d", message.subscription)
                return
            event = self._kind.wrap(message, sub.program_id)
            if event is None:
                logger.warning(
                    "dropping a %s on a %s subscription",
                    type(message).__name__,
                    self._kind.label,
                )
                return
            await self._hand_over(link, event, size)
            previous = sub.cursor
            slot = sub.cursor = self.cursor = message.slot
            # A replay's boundary repeats the last delivered slot: no sign of an early claim.
            if slot < self._proofs.ceiling and (previous is None or slot > previous):
                self._withdraw(slot)
            if self._record is not None:
                # In the stream now: recorded before this task does anything else.
                await self._recorded(link, self._record, message, sub.program_id)
        elif isinstance(message, SubscriptionComplete):
            sub = link.by_sub.get(message.subscription)
            if sub is None:
                logger.debug("dropping terminal of unknown subscription %d", message.subscription)
            elif not sub.complete:
                sub.complete = True
                self._observer.terminal(sub.index)
        else:
            self._drop(message)

    async def _hand_over(self, link: _Link, event: E, size: int) -> None:
        link.delivering = True
        self._observer.delivery_started()
        try:
            await self._deliver(event, size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _ConsumerGone from None
        finally:
            link.delivering = False
            link.resumed_at = trio.current_time()
            self._observer.delivery_finished()

    async def _recorded(
        self, link: _Link, record: NotificationRecorder, message: _Notification, program_id: str
    ) -> None:
        """Record a delivered notification.

        Waiting for the disk is like waiting for a slow consumer: neither a silence of the
        peer (keepalive) nor an idle subscription (completion drain).
        """
        link.delivering = True
        self._observer.delivery_started()
        try:
            await record(message, program_id)
        finally:
            link.delivering = False
            link.resumed_at = trio.current_time()
            self._observer.delivery_finished()

    def _drop(self, message: RpcMessage) -> None:
        if isinstance(message, UnknownRpcMessage):
            method = message.raw.get("method")
            name = excerpt(method) if isinstance(method, str) else "-"
            logger.info("dropping unknown data-plane message (method %s)", name)
        else:
            logger.info("dropping unexpected data-plane message %s", type(message).__name__)


# --------------------------------------------------------------------------------------------
# Session-bound subscriptions
# --------------------------------------------------------------------------------------------


class SessionGate:
    """One (sub-)session's view of the reconnect coordinator its siblings share (§9.8).

    A parked connection waits until no sibling connection is streaming. But a session with a
    parked connection cannot advance (``send_continue`` waits for every subscription to be UP),
    so its other connections, though open, will carry nothing more until the parked one is back.
    Counted as streaming, they would make the parked connection wait for its own session, and
    two sessions parked that way would wait for each other, each until its outage budget ran
    out. So while any connection of the session is parked, its streaming connections are
    withdrawn from the shared count; they count again once none is parked.
    """

    __slots__ = ("_coordinator", "_parked", "_streaming")

    def __init__(self, coordinator: ReconnectCoordinator) -> None:
        self._coordinator = coordinator
        self._streaming = 0
        self._parked = 0

    def __repr__(self) -> str:
        return f"<SessionGate streaming={self._streaming} parked={self._parked}>"

    async def acquire_slot(self) -> None:
        self._parked += 1
        if self._parked == 1:
            for _ in range(self._streaming):
                self._coordinator.stream_stopped()
        try:
            await self._coordinator.acquire_slot()
        finally:
            self._parked -= 1
            if self._parked == 0:
                for _ in range(self._streaming):
                    self._coordinator.stream_started()

    def release_slot(self) -> None:
        self._coordinator.release_slot()

    def stream_started(self) -> None:
        self._streaming += 1
        if not self._parked:
            self._coordinator.stream_started()

    def stream_stopped(self) -> None:
        self._streaming -= 1
        if not self._parked:
            self._coordinator.stream_stopped()


class _Entry:
    __slots__ = ("done", "manager", "scope")

    def __init__(
        self,
        manager: SubscriptionManager[AccountDiff]
        | SubscriptionManager[Transaction]
        | SubscriptionManager[ProgramLogs],
    ) -> None:
        self.manager = manager
        self.scope = trio.CancelScope()
        self.done = False


class _Activity:
    """What the managers of one session report, shared with its drain and ``wait_all_up``."""

    __slots__ = ("delivering", "tracker", "waiters")

    def __init__(self) -> None:
        self.delivering = 0
        """Managers currently handing a notification to the (possibly slow) consumer."""
        self.tracker: DrainTracker[tuple[int, int]] | None = None
        self.waiters = Waiters()

    def wake(self) -> None:
        self.waiters.wake()


class _SessionObserver(SubscriptionObserver):
    __slots__ = ("_activity", "_position")

    def __init__(self, activity: _Activity, position: int) -> None:
        self._activity = activity
        self._position = position

    def delivery_started(self) -> None:
        self._activity.delivering += 1
        self._activity.wake()  # a continue held by the barrier no longer waits for this one

    def delivery_finished(self) -> None:
        self._activity.delivering -= 1
        self.delivered()

    def delivered(self) -> None:
        activity = self._activity
        if activity.tracker is not None:
            activity.tracker.notification(trio.current_time())
        activity.wake()

    def terminal(self, index: int) -> None:
        activity = self._activity
        if activity.tracker is not None:
            activity.tracker.terminal((self._position, index), trio.current_time())
        activity.wake()

    def changed(self) -> None:
        self._activity.wake()


class SessionSubscriptions:
    """All data-plane subscriptions of one (sub-)session.

    Every ``subscribe_*`` call starts one :class:`SubscriptionManager` task in the
    (sub-)session's nursery (once it is open, when ``nursery`` is None at first: see
    :meth:`attach`); notifications go to ``stream.put_data``, a give-up to
    ``stream.put_failure``. ``max_total`` is the outage budget of each manager (the session's
    ``config.max_total_for(disconnect_timeout_secs)``; None: ``config.max_total_for(None)``).
    ``record`` (a session's recorder) is given every notification once it is in the stream.
    """

    def __init__(
        self,
        *,
        rpc_endpoint: str,
        start_slot: int | None,
        stream: EventStream,
        config: ManagedConfig,
        redactor: Redactor | None = None,
        coordinator: ReconnectCoordinator | None,
        nursery: trio.Nursery | None,
        max_total: float | None = None,
        record: NotificationRecorder | None = None,
        position: Callable[[], int | None] | None = None,
    ) -> None:
        self._rpc_endpoint = rpc_endpoint
        self._record = record
        self._position = position if position is not None else (lambda: start_slot)
        self._window = config.data_lag_window
        self._start_slot = start_slot
        self._stream = stream
        self._config = config
        self._redactor = redactor
        self._gate = SessionGate(coordinator) if coordinator is not None else None
        self._nursery = nursery
        self._not_started: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = []
        self._max_total = max_total if max_total is not None else config.max_total_for(None)
        self._entries: list[_Entry] = []
        self._drain_timeout = config.completion_drain_timeout
        self._activity = _Activity()
        self._drain_scope = trio.CancelScope()
        self._stopped = False

    def __repr__(self) -> str:
        return f"<SessionSubscriptions managers={len(self._entries)}>"

    def attach(self, nursery: trio.Nursery) -> None:
        """The (sub-)session's nursery is open: start what was asked for before it was."""
        self._nursery = nursery
        waiting, self._not_started = self._not_started, []
        for function, args in waiting:
            nursery.start_soon(function, *args)

    def _spawn(self, function: Callable[..., Awaitable[object]], *args: object) -> None:
        if self._nursery is None:
            self._not_started.append((function, args))
        else:
            self._nursery.start_soon(function, *args)

    @property
    def managers(
        self,
    ) -> tuple[
        SubscriptionManager[AccountDiff]
        | SubscriptionManager[Transaction]
        | SubscriptionManager[ProgramLogs],
        ...,
    ]:
        return tuple(entry.manager for entry in self._entries)

    def subscribe_account_diffs(self, program_ids: Sequence[str]) -> None:
        """Start an account-diff manager for ``program_ids`` (returns at once)."""
        self._start(self._manager(ACCOUNT_DIFFS, program_ids))

    def subscribe_transactions(self, program_ids: Sequence[str]) -> None:
        """Start a transaction manager for ``program_ids`` (returns at once)."""
        self._start(self._manager(TRANSACTIONS, program_ids))

    def subscribe_program_logs(self, program_ids: Sequence[str]) -> None:
        """Start a logs manager for ``program_ids`` (returns at once)."""
        self._start(self._manager(LOGS, program_ids))

    def _manager(
        self, kind: SubscriptionKind[E], program_ids: Sequence[str]
    ) -> SubscriptionManager[E]:
        return SubscriptionManager(
            rpc_endpoint=self._rpc_endpoint,
            kind=kind,
            program_ids=program_ids,
            config=self._config,
            redactor=self._redactor,
            deliver=self._stream.put_data,
            deliver_nowait=self._stream.put_data_nowait,
            start_slot=self._start_slot,
            max_total=self._max_total,
            coordinator=self._gate,
            observer=_SessionObserver(self._activity, len(self._entries)),
            record=self._record,
            position=self._position,
        )

    def _start(
        self,
        manager: SubscriptionManager[AccountDiff]
        | SubscriptionManager[Transaction]
        | SubscriptionManager[ProgramLogs],
    ) -> None:
        position = len(self._entries)
        entry = _Entry(manager)
        self._entries.append(entry)
        if self._activity.tracker is not None:
            for index in range(len(manager.program_ids)):
                self._activity.tracker.add((position, index))
        if self._stopped:
            entry.scope.cancel()
        self._spawn(self._run, entry)

    async def _run(self, entry: _Entry) -> None:
        try:
            with entry.scope:
                await entry.manager.run()
        except SubscriptionFailed as exc:
            self._stream.put_failure(exc)
        finally:
            entry.done = True
            self._activity.wake()

    def all_up(self) -> bool:
        """True when every subscription is UP or finished and none gave up (nothing to wait for)."""
        for entry in self._entries:
            manager = entry.manager
            if manager.failure is not None:
                return False
            if not (manager.status.value is ConnectionStatus.UP or manager.finished or entry.done):
                return False
        return True

    def ready_to_continue(self) -> bool:
        """Probe every subscription at the control plane's slot; True if a continue may go.

        That is: every subscription is UP or finished, and none has its proven slot more than
        ``data_lag_window`` behind the control plane's (the data-plane barrier) -- unless it is
        blocked on the consumer: the driver waiting here is that consumer, so waiting for it
        would never end.
        """
        slot = self._position()
        window = self._window
        ready = True
        for entry in self._entries:
            manager = entry.manager
            if slot is not None:
                manager.probe(slot)
            if entry.done:
                continue
            up = manager.status.value is ConnectionStatus.UP or manager.finished
            # Never for a manager blocked on the consumer: the driver that would wait here is
            # that consumer.
            lagging = (
                lags_behind(slot, manager.proven_position, window) and not manager.consumer_behind
            )
            if not up or lagging:
                ready = False
        return ready

    async def wait_all_up(self) -> None:
        """Wait until every subscription is UP or finished and the barrier lets a continue go.

        Raises:
            ContinueSendFailed: a subscription gave up (chained from its SubscriptionFailed).
        """
        await self._activity.waiters.wait_until(
            lambda: self._failure() is not None or self.ready_to_continue()
        )
        failure = self._failure()
        if failure is not None:
            raise ContinueSendFailed(str(failure)) from failure

    def _failure(self) -> SubscriptionFailed | None:
        for entry in self._entries:
            if entry.manager.failure is not None:
                return entry.manager.failure
        return None

    def set_completion_drain_timeout(self, seconds: float) -> None:
        """Idle bound of the completion drain; also applies to a drain already running."""
        if isinstance(seconds, bool) or not seconds > 0:
            raise InvalidParams(f"completion drain timeout must be > 0, got {seconds!r}")
        self._drain_timeout = float(seconds)
        if self._activity.tracker is not None:
            self._activity.tracker.set_idle_timeout(self._drain_timeout)
            self._activity.wake()

    def complete_after_drain(self, completed: Completed) -> None:
        """Drain every subscription to its terminals, then put ``completed`` (protocol §9.9)."""
        if not self._entries:
            self._stream.put_control(completed)
            return
        if self._activity.tracker is not None:
            return
        pending = [
            (position, index)
            for position, entry in enumerate(self._entries)
            for index in entry.manager.incomplete
        ]
        self._activity.tracker = DrainTracker(pending, self._drain_timeout, trio.current_time())
        self._spawn(self._drain, self._activity.tracker, completed)

    async def _drain(self, tracker: DrainTracker[tuple[int, int]], completed: Completed) -> None:
        with self._drain_scope:
            while True:
                if self._stream.terminal_queued:
                    return  # a manager gave up and said so already
                if tracker.is_complete:
                    self._stream.put_control(completed)
                    return
                if self._activity.delivering:
                    # The consumer is behind, not the server: no idle clock while it catches up.
                    await self._activity.waiters.wait()
                    continue
                with trio.move_on_at(tracker.deadline):
                    await self._activity.waiters.wait()
                    continue
                if not self._activity.delivering and tracker.is_stalled(trio.current_time()):
                    logger.warning(
                        "completion drain stalled; %d subscription(s) without terminal",
                        len(tracker.pending),
                    )
                    self._stream.put_failure(SubscriptionFailed(STALLED_MESSAGE), after_data=True)
                    self.stop()
                    return

    def stop(self) -> None:
        """Cancel every manager task (and the drain) of this (sub-)session."""
        self._stopped = True
        for entry in self._entries:
            entry.scope.cancel()
        self._drain_scope.cancel()
        self._activity.wake()


# --------------------------------------------------------------------------------------------
# Standalone subscriptions
# --------------------------------------------------------------------------------------------


class _ChannelObserver(SubscriptionObserver, Generic[E]):
    __slots__ = ("_send",)

    def __init__(self, send: QueueSendChannel[E]) -> None:
        self._send = send

    def finished(self) -> None:
        self._send.close()


class DataSubscription(Generic[E]):
    """What ``open_*_subscription`` yields: ``notifications`` ends after every terminal.

    ``notifications`` is a trio ``ReceiveChannel`` with a memory channel's behaviour for one
    receiver (no ``clone``); it yields to the scheduler every 256 queued items rather than on
    every ``receive``, so that a whole socket read is handed over without a task switch each.
    """

    __slots__ = ("_manager", "notifications")

    def __init__(
        self, notifications: QueueReceiveChannel[E], manager: SubscriptionManager[E]
    ) -> None:
        self.notifications = notifications
        self._manager = manager

    def __repr__(self) -> str:
        return f"<DataSubscription {self._manager.kind.label} {self.connection_status.name}>"

    @property
    def connection_status(self) -> ConnectionStatus:
        return self._manager.status.value

    @property
    def cursor(self) -> int | None:
        """Slot of the last delivered notification."""
        return self._manager.cursor

    async def wait_up(self) -> None:
        """Wait until every subscription is acknowledged (or the stream has ended)."""
        manager = self._manager
        await manager.status.wait_until(
            lambda s: s in (ConnectionStatus.UP, ConnectionStatus.FAILED) or manager.finished
        )


@asynccontextmanager
async def open_account_diff_subscription(
    rpc_endpoint: str, program_ids: Sequence[str], *, config: ManagedConfig | None = None
) -> AsyncGenerator[DataSubscription[AccountDiff]]:
    """Account diffs of ``program_ids`` from a session's data plane, outside a managed session.

    ``rpc_endpoint`` is the session's ``http(s)://`` endpoint. ``notifications`` ends once every
    program's terminal arrived. A give-up raises ``SubscriptionFailed`` out of the block.
    """
    async with _open_standalone(ACCOUNT_DIFFS, rpc_endpoint, program_ids, config) as sub:
        yield sub


@asynccontextmanager
async def open_transaction_subscription(
    rpc_endpoint: str, program_ids: Sequence[str], *, config: ManagedConfig | None = None
) -> AsyncGenerator[DataSubscription[Transaction]]:
    """Transactions involving ``program_ids``; see :func:`open_account_diff_subscription`."""
    async with _open_standalone(TRANSACTIONS, rpc_endpoint, program_ids, config) as sub:
        yield sub


@asynccontextmanager
async def open_logs_subscription(
    rpc_url: str, program_ids: Sequence[str], *, config: ManagedConfig | None = None
) -> AsyncGenerator[DataSubscription[ProgramLogs]]:
    """``logsSubscribe`` for each of ``program_ids`` (its ``mentions`` filter), as
    :class:`~simtrio.events.ProgramLogs` events; see :func:`open_account_diff_subscription`."""
    async with _open_standalone(LOGS, rpc_url, program_ids, config) as sub:
        yield sub


@asynccontextmanager
async def _open_standalone(
    kind: SubscriptionKind[E],
    rpc_endpoint: str,
    program_ids: Sequence[str],
    config: ManagedConfig | None,
) -> AsyncGenerator[DataSubscription[E]]:
    if config is None:
        config = ManagedConfig()
    elif not isinstance(config, ManagedConfig):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams("config must be a ManagedConfig")
    if not isinstance(rpc_endpoint, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams("rpc_endpoint must be a str")
    split_ws_url(http_to_ws_url(rpc_endpoint))  # an unusable URL fails here, before any task
    ids = _check_program_ids(program_ids)
    send: QueueSendChannel[E]
    receive: QueueReceiveChannel[E]
    send, receive = open_queue(config.event_buffer, config.event_buffer_bytes)
    manager = SubscriptionManager(
        rpc_endpoint=rpc_endpoint,
        kind=kind,
        program_ids=ids,
        config=config,
        deliver=send.send_sized,
        deliver_nowait=send.try_send,
        observer=_ChannelObserver(send),
        first_connect_max_total=config.first_connect_max_total,
    )
    failures: list[SubscriptionFailed] = []

    async def run(scope: trio.CancelScope) -> None:
        try:
            await manager.run()
        except SubscriptionFailed as exc:
            failures.append(exc)
            scope.cancel()  # the body too: its data can no longer be trusted to be complete

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, nursery.cancel_scope)
            try:
                yield DataSubscription(receive, manager)
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = _unwrap(group)
        if error is group:
            raise
        raise error from error.__cause__  # keeps the error's own cause, hides the group
    finally:
        send.close()
    if failures:
        raise failures[0]


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single exception of a nursery's group; the group itself when there are several."""
    if len(group.exceptions) == 1:
        return group.exceptions[0]
    return group


async def _get_slot(
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
