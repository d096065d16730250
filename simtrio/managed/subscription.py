"""One reconnecting data-plane subscription manager (protocol §9, §10).

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
"""

from __future__ import annotations

__all__: list[str] = []

import logging
import math
from typing import TYPE_CHECKING, Generic, NoReturn, cast

import trio

from simtrio.core.backoff import ReconnectState
from simtrio.core.barrier import (
    Proofs,
    gap_between,
    probe_due,
    probe_payload,
)
from simtrio.errors import (
    ConnectError,
    ConnectionClosed,
    InvalidParams,
    ProtocolError,
    SubscriptionFailed,
)
from simtrio.managed.config import ConnectionStatus
from simtrio.managed.data_link import (
    BUDGET_SPENT,
    ConsumerGone,
    Gap,
    Link,
    Lost,
    Outcome,
    Rejected,
    Sub,
    SubscriptionObserver,
    drop,
    get_slot,
    needed_from,
    poll_session_slot,
    replay_slot,
)
from simtrio.managed.queue import HANDOVER_CHUNK
from simtrio.managed.status import StatusCell
from simtrio.managed.subscription_kinds import (
    NOTIFICATION_TYPES,
    E,
    Notification,
    SubscriptionKind,
    check_program_ids,
)
from simtrio.transport.connection import connect
from simtrio.wire.compression import ZstdStreamDecoder
from simtrio.wire.rpc import (
    AccountDiffNotification,
    LogsNotification,
    RpcMessage,
    Subscribe,
    SubscriptionComplete,
    TransactionNotification,
    decode_rpc,
)
from simtrio.wire.urls import http_to_ws_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from simtrio.managed.config import ManagedConfig
    from simtrio.managed.coordinator import ReconnectCoordinator, SessionGate
    from simtrio.managed.recording_tap import NotificationRecorder
    from simtrio.wire.redact import Redactor

logger = logging.getLogger(__name__)


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
        self._subs = tuple(Sub(i, p) for i, p in enumerate(check_program_ids(program_ids)))
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
        self._link: Link | None = None

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
        return link is not None and link.pause.active

    def probe(self, slot: int) -> None:
        """Ask for proof that everything up to ``slot`` arrived (a Ping; returns at once)."""
        if self._wanted is None or slot > self._wanted:
            self._wanted = slot
        link = self._link
        if link is not None and link.up and link.probe_sent is None and self._probe_due():
            link.wake_keepalive.wake()

    def _next_probe(self, link: Link) -> bytes | None:
        """The payload of the probe Ping to send on ``link`` now, if one is due."""
        wanted = self._wanted
        if link.up and link.probe_sent is None and wanted is not None and self._probe_due():
            link.probe_sent = wanted
            self.probes += 1
            return probe_payload(wanted)
        return None

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

    async def _current_slot(self) -> int | None:
        """The session's slot now: the control plane's, else the session RPC's ``getSlot``."""
        if self._position is not None:
            return self._position()
        return await get_slot(self._rpc_endpoint, self._config)

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
                last = last_error if outcome.reason == BUDGET_SPENT and last_error else None
                self._give_up(f"stopped reconnecting; last error: {last or outcome.reason}")
            if outcome.reason != BUDGET_SPENT:
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

    async def _attempt(self, ws_url: str, state: ReconnectState, *, gated: bool) -> Outcome:
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
                self.origin = await get_slot(self._rpc_endpoint, config)
        link = Link(config.data_pong_timeout)
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
                return Outcome("failed", reason=BUDGET_SPENT)
            state.connected()  # the first-connect budget no longer applies to the handshake
            opened = state.deadline()
            deadline = math.inf if opened is None else opened
            link.decoder = ZstdStreamDecoder(config.max_message_size)
            link.conn.on_pong = lambda payload, ahead: link.pong(payload, ahead, self._answered)
            self._link = link
            return await self._serve(link, state, deadline, replay=replay)
        except ConnectError as exc:
            return Outcome("failed", reason=str(exc), fatal=exc.fatal)
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
        self, link: Link, state: ReconnectState, deadline: float, *, replay: bool
    ) -> Outcome:
        conn = link.conn
        assert conn is not None
        came_up = False
        consumer_gone = False
        rejected = False
        async with trio.open_nursery() as nursery:
            link.scope = nursery.cancel_scope
            nursery.start_soon(link.keepalive, self._config, self._next_probe)
            held: list[RpcMessage] = []
            try:
                with trio.move_on_at(deadline) as budget:
                    held = await link.subscribe(
                        self._requests(replay=replay),
                        silence=self._config.handshake_timeout,
                        redactor=self._redactor,
                    )
                if budget.cancelled_caught:
                    raise Lost("reconnect budget spent during the subscribe handshake")
                if replay:
                    # Not reading meanwhile is our doing, not the peer's silence.
                    with link.pause:
                        await self._check_gap()
                came_up = True
                self._up(link, state)
                for message in held:
                    await self._handle(link, message)
                link.up = True
                link.wake_keepalive.wake()
                if self._position is None:
                    nursery.start_soon(
                        poll_session_slot, self._rpc_endpoint, self._config, self.probe
                    )
                await self._stream(link, replay=replay)
            except (ConnectionClosed, ProtocolError, Lost) as exc:
                # A corrupt compressed message is quoted as received: take the key out of it.
                reason = str(exc)
                link.lose(reason if self._redactor is None else self._redactor.text(reason))
            except (Rejected, Gap) as exc:
                reason = str(exc)
                link.lose(reason if self._redactor is None else self._redactor.text(reason))
                rejected = True
            except ConsumerGone:
                consumer_gone = True
            nursery.cancel_scope.cancel()
        if consumer_gone:
            return Outcome("stopped")
        if link.lost is not None:
            return Outcome(
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
        return Outcome("finished", came_up=True)

    async def _check_gap(self) -> None:
        """After re-subscribing: fail if the server may have dropped events still needed.

        Checked once the acks are in, against the session's slot then: from that point the
        server keeps what the new subscriptions are owed.
        """
        needed = needed_from(self._subs, self._proofs.proven, self.origin, self._start_slot)
        if needed is None:
            return
        current = await self._current_slot()
        retained = self._config.server_retained_slots
        if gap_between(current, needed, retained):
            raise Gap(
                f"data-plane gap: the session is at slot {current} and the server keeps only"
                f" the last {retained} slots, but this subscription still needed slot {needed}"
                " onward; notifications in between may be missing"
            )

    def _up(self, link: Link, state: ReconnectState) -> None:
        state.connection_up(trio.current_time())
        coordinator = self._coordinator
        if coordinator is not None:
            coordinator.stream_started()
            link.streaming = True
            if link.slot_held:
                link.slot_held = False
                coordinator.release_slot()
        self._set(ConnectionStatus.UP)

    # -- subscribing ---------------------------------------------------------------------------

    def _requests(self, *, replay: bool) -> list[tuple[Sub, Subscribe]]:
        """The subscribe request of every subscription still waiting for its terminal."""
        method = self._kind.method
        pending = [sub for sub in self._subs if not sub.complete]
        return [
            (
                sub,
                Subscribe(
                    method,
                    request_id,
                    sub.program_id,
                    replay_slot(sub, self._start_slot, self.cursor, self.origin, replay=replay),
                ),
            )
            for request_id, sub in enumerate(pending, 1)
        ]

    # -- delivering ----------------------------------------------------------------------------

    async def _stream(self, link: Link, *, replay: bool) -> None:
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
            if nowait is not None and type(message) in NOTIFICATION_TYPES:
                notification = cast("Notification", message)
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
                        raise ConsumerGone from None
                    if queued:
                        previous = sub.cursor
                        slot = sub.cursor = self.cursor = notification.slot
                        if slot < proofs.ceiling and (previous is None or slot > previous):
                            self._withdraw(slot)
                        if record is not None:
                            await link.not_reading(observer, record(notification, sub.program_id))
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

    async def _handle(self, link: Link, message: RpcMessage, size: int = 0) -> None:
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
            try:
                await link.not_reading(self._observer, self._deliver(event, size))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise ConsumerGone from None
            previous = sub.cursor
            slot = sub.cursor = self.cursor = message.slot
            # A replay's boundary repeats the last delivered slot: no sign of an early claim.
            if slot < self._proofs.ceiling and (previous is None or slot > previous):
                self._withdraw(slot)
            if self._record is not None:
                # In the stream now: recorded before this task does anything else.
                await link.not_reading(self._observer, self._record(message, sub.program_id))
        elif isinstance(message, SubscriptionComplete):
            sub = link.by_sub.get(message.subscription)
            if sub is None:
                logger.debug("dropping terminal of unknown subscription %d", message.subscription)
            elif not sub.complete:
                sub.complete = True
                self._observer.terminal(sub.index)
        else:
            drop(message)
