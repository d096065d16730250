"""Server-side sessions: what a backtest session is, independent of any connection.

A session owns two append-only logs. The *response log* holds its control-plane responses,
numbered from 1; a control connection streams from it with a cursor, so an attach is just a
new cursor (replay = entries above ``last_sequence``) and nothing is ever pushed at a socket.
The *data log* holds the data-plane events of the last ``retained_slots`` slots (fewer when
they count for more than ``retained_bytes``), bucketed by (kind, program), and data connections
stream from it the same way.

Steps run as tasks in the server's nursery, so a session keeps executing when its control
connection goes away. Memory stays bounded by back-pressure: before each slot a step waits
while a live, attached reader (control or data) lags too far behind, in count or in bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections import deque
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import attrs
import trio

from simtrio.server import chain
from simtrio.server.executor import (
    AccountRejected,
    ChainUnavailable,
    Executed,
    SessionChain,
    TransactionRejected,
    WrittenAccount,
    account_json,
    decode_base64_transaction,
)
from simtrio.server.pubsub import logs_notification_text
from simtrio.wire import types as wire
from simtrio.wire.backtest_errors import (
    BacktestError,
    Internal,
    InvalidAccountEncoding,
    InvalidAccountOwner,
    InvalidAccountPubkey,
    InvalidRequest,
    InvalidTransactionEncoding,
    NoMoreBlocks,
)
from simtrio.wire.base58 import is_address
from simtrio.wire.codec import encode_response
from simtrio.wire.jsonrpc import account_data_json
from simtrio.wire.rpc import (
    AccountDiffNotification,
    TransactionNotification,
)
from simtrio.wire.rpc_server import encode_rpc
from simtrio.wire.types import (
    AccountData,
    AgentStatsReport,
    BacktestStatus,
    ContinueParams,
    ContinueToParams,
    CreateBacktestSessionRequest,
    DiscoveryBatchEvent,
    DiscoveryFilter,
    EncodedBinary,
    Error,
    PausedEvent,
    ProgramExecuted,
    SessionSummary,
    SlotNotification,
    Success,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from solders.transaction import VersionedTransaction

    from simtrio.server.conn import Conn
    from simtrio.server.state import ServerState
    from simtrio.wire.jsontext import JsonValue

__all__ = [
    "DataEvent",
    "DataLog",
    "LazyNotification",
    "Emitted",
    "Ownership",
    "ParallelGroup",
    "ResponseLog",
    "Session",
    "Signal",
    "Subscription",
]

logger = logging.getLogger(__name__)

Emitted: TypeAlias = (
    wire.ReadyForContinue
    | SlotNotification
    | wire.Paused
    | wire.DiscoveryBatch
    | Error
    | Success
    | wire.Completed
    | wire.Status
)
"""What a session emits: valid both as a top-level response and as a session event."""

DataKind: TypeAlias = Literal["account", "transaction"]
BucketKey: TypeAlias = tuple[DataKind, str]
Notification: TypeAlias = AccountDiffNotification | TransactionNotification
_DISCOVERY_SCAN_SLOTS = 10_000
"""How far ahead one discovery announcement looks for a matching batch."""
_SCAN_CHECKPOINT_SLOTS = 32
"""Slots a discovery scan looks at between two checkpoints (about 10 ms of work)."""

SYNTHETIC_TRANSACTION_BYTES: Final = 4_096
"""What a synthetic transaction's event counts for against ``retained_bytes`` (its
notification and its logs view are below 3.5 KiB)."""
SYNTHETIC_DIFF_BYTES: Final = 1_024
"""What a synthetic account diff counts for (below 700 bytes encoded)."""
DIFF_OVERHEAD_BYTES: Final = 1_024
"""What a user account diff counts for beyond its account data (keys, owners, lamports...)."""

Position: TypeAlias = tuple[int, int]
"""(slot, batch index): the next batch a session will execute."""


class _StepAborted(Exception):
    """The session was closed or removed while a step was between slots."""


class Signal:
    """Wakes every task waiting on it; take ``event`` before checking state, then wait on it."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def notify(self) -> None:
        self.event.set()
        self.event = trio.Event()


class ResponseLog:
    """A session's numbered responses, the newest ``cap`` of them retained.

    Each entry also remembers how many bytes (encoded, unnumbered) the log held before it,
    so the size of any tail of the log is one subtraction.
    """

    def __init__(self, cap: int) -> None:
        self._entries: deque[tuple[int, Emitted, int]] = deque(maxlen=cap)
        self.last_seq = 0
        self.total_bytes = 0
        """Bytes of every response appended so far (retained or not)."""
        self.signal = Signal()

    def append(self, response: Emitted) -> int:
        self.last_seq += 1
        self._entries.append((self.last_seq, response, self.total_bytes))
        self.total_bytes += len(encode_response(response))
        self.signal.notify()
        return self.last_seq

    def after(self, seq: int) -> tuple[int, Emitted] | None:
        """The first retained entry numbered above ``seq``."""
        if not self._entries:
            return None
        index = max(seq + 1 - self._entries[0][0], 0)
        if index >= len(self._entries):
            return None
        entry = self._entries[index]
        return entry[0], entry[1]

    def between(self, after: int, upto: int) -> list[tuple[int, Emitted]]:
        """Retained entries numbered in ``(after, upto]``."""
        return [(entry[0], entry[1]) for entry in self._entries if after < entry[0] <= upto]

    def bytes_after(self, seq: int) -> int:
        """Bytes of the responses numbered above ``seq`` (all retained ones if it is older)."""
        if not self._entries:
            return 0
        index = max(seq + 1 - self._entries[0][0], 0)
        if index >= len(self._entries):
            return 0
        return self.total_bytes - self._entries[index][2]


_SUBSCRIPTION_SLOT: Final = '"params":{"subscription":0,'


class LazyNotification:
    """A notification built and encoded on first use, then shared.

    Most events are never sent (nobody subscribed to that program), so payloads are not
    built at execution time. The text is encoded once with subscription 0 and the id is
    patched in per subscription; one transaction's events for several programs share it.

    A transaction's event also carries its ``logsNotification`` (``logs``): a logs
    subscription is a view of the transaction stream of the same program, so the data log
    holds one event for both.
    """

    __slots__ = ("_build", "_logs", "_logs_text", "_text")

    def __init__(
        self, build: Callable[[], Notification], logs: Callable[[], str] | None = None
    ) -> None:
        self._build: Callable[[], Notification] | None = build
        self._text: str | None = None
        self._logs = logs
        self._logs_text: str | None = None

    def text_for(self, subscription: int, logs: bool = False) -> str:
        if logs:
            text = self._logs_text
            if text is None:
                assert self._logs is not None, "a logs subscription reads transaction events"
                text = self._logs_text = self._logs()
                self._logs = None
        else:
            text = self._text
            if text is None:
                assert self._build is not None
                text = self._text = encode_rpc(self._build())
                self._build = None
        if subscription == 0:
            return text
        return text.replace(
            _SUBSCRIPTION_SLOT, '"params":{"subscription":' + str(subscription) + ",", 1
        )


@attrs.frozen
class DataEvent:
    """One data-plane event; ``index`` orders events across buckets (execution order)."""

    index: int
    slot: int
    notification: LazyNotification
    size: int
    """Bytes it counts for against ``retained_bytes``."""


class _Bucket:
    __slots__ = ("base", "entries")

    def __init__(self, base: int = 0) -> None:
        self.base = base
        self.entries: deque[DataEvent] = deque()

    @property
    def end(self) -> int:
        return self.base + len(self.entries)

    def get(self, position: int) -> DataEvent | None:
        offset = position - self.base
        return self.entries[offset] if 0 <= offset < len(self.entries) else None

    def first_at_or_after(self, slot: int) -> int:
        for offset, event in enumerate(self.entries):
            if event.slot >= slot:
                return self.base + offset
        return self.end


class Subscription:
    """One data-plane subscription: a cursor into one bucket of a session's data log."""

    __slots__ = ("complete", "conn", "id", "key", "logs", "overtaken", "position")

    def __init__(
        self, sub_id: int, key: BucketKey, position: int, conn: Conn, *, logs: bool = False
    ) -> None:
        self.id = sub_id
        self.key = key
        self.position = position
        self.conn = conn
        self.complete = False
        self.logs = logs
        """Sends the transactions' ``logsNotification`` instead (``logsSubscribe``)."""
        self.overtaken = False
        """Events it was owed left the retained window before it could send them."""

    def peek(self, log: DataLog) -> DataEvent | None:
        """The next event owed; events trimmed meanwhile (while the subscription was not
        live) are skipped, and ``overtaken`` says so."""
        bucket = log.bucket(self.key)
        if self.position < bucket.base:
            self.overtaken = True
            self.position = bucket.base
        return bucket.get(self.position)

    @property
    def live(self) -> bool:
        """Counts for back-pressure and retention (a stalled connection does not)."""
        return not self.complete and not self.conn.stalled and not self.conn.gone


class DataLog:
    """A session's data-plane events, bucketed by (kind, program id)."""

    def __init__(self) -> None:
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._next_index = 0
        self.bytes = 0
        """What the retained events count for (``DataEvent.size``)."""
        self._slot_bytes: dict[int, int] = {}
        """The same by slot, oldest first (events are appended in slot order)."""
        self.cut_below = 0
        """Events of slots below this may be gone before ``retained_slots`` ran out (the byte
        bound dropped them): a replay from there cannot be complete."""
        self.subs: set[Subscription] = set()
        self.signal = Signal()

    def bucket(self, key: BucketKey) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            # Numbered from the event count, so a bucket made again after being dropped
            # starts above any position handed out for its earlier life.
            bucket = self._buckets[key] = _Bucket(self._next_index)
        return bucket

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    def append(self, key: BucketKey, slot: int, notification: LazyNotification, size: int) -> None:
        self.bucket(key).entries.append(DataEvent(self._next_index, slot, notification, size))
        self._next_index += 1
        self.bytes += size
        self._slot_bytes[slot] = self._slot_bytes.get(slot, 0) + size

    def slot_bytes(self, slot: int) -> int:
        """What the retained events of ``slot`` count for."""
        return self._slot_bytes.get(slot, 0)

    def byte_floor(self, limit: int) -> int | None:
        """The oldest slot to keep so that the retained events fit in ``limit`` bytes.

        Whole slots are dropped, oldest first, and the newest slot is always kept, however
        large; None when nothing is retained.
        """
        total = self.bytes
        remaining = len(self._slot_bytes)
        for slot, size in self._slot_bytes.items():
            if total <= limit or remaining == 1:
                return slot
            total -= size
            remaining -= 1
        return None

    def start_position(self, key: BucketKey, from_slot: int) -> int:
        """Where a subscription starting at ``from_slot`` begins (oldest retained if older)."""
        return self.bucket(key).first_at_or_after(from_slot)

    def end_position(self, key: BucketKey) -> int:
        return self.bucket(key).end

    def trim(self, min_slot: int) -> None:
        """Drop events of slots below ``min_slot`` that no live subscription still needs."""
        floors: dict[BucketKey, int] = {}
        watched: set[BucketKey] = set()
        for sub in self.subs:
            watched.add(sub.key)
            if sub.live:
                floors[sub.key] = min(floors.get(sub.key, sub.position), sub.position)
        empty: list[BucketKey] = []
        for key, bucket in self._buckets.items():
            floor = floors.get(key, bucket.end)
            entries = bucket.entries
            while entries and entries[0].slot < min_slot and bucket.base < floor:
                event = entries.popleft()
                bucket.base += 1
                self._forget(event)
            if not entries and key not in watched:
                empty.append(key)
        # User transactions can mention any address: keep no bucket nobody needs.
        for key in empty:
            del self._buckets[key]

    def _forget(self, event: DataEvent) -> None:
        self.bytes -= event.size
        left = self._slot_bytes[event.slot] - event.size
        if left:
            self._slot_bytes[event.slot] = left
        else:
            del self._slot_bytes[event.slot]

    def lagging(self, min_slot: int) -> bool:
        """True while a live subscription still owes events of a slot below ``min_slot``."""
        for sub in self.subs:
            if sub.live:
                event = sub.peek(self)
                if event is not None and event.slot < min_slot:
                    return True
        return False


class Ownership:
    """Which control connection streams a session (or parallel group), and its disconnect timer.

    When the owner goes away the session waits ``timeout`` seconds for an attach; with 0 it
    is removed at once. The timer is a ``trio.sleep`` in the server's nursery, so it follows
    a mock clock. The server keeps at most ``max_detached_sessions`` waiting; past that, the
    one detached longest is removed early.
    """

    def __init__(self, state: ServerState, timeout: int, remove: Callable[[], None]) -> None:
        self._state = state
        self.timeout = timeout
        self._remove = remove
        self.owner: Conn | None = None
        self._timer: trio.CancelScope | None = None
        self.on_change: list[Callable[[], None]] = []

    def take(self, conn: Conn) -> Conn | None:
        """Make ``conn`` the owner; returns the previous owner, if any."""
        previous, self.owner = self.owner, conn
        self._stop_timer()
        self._changed()
        return previous if previous is not conn else None

    def detach(self, conn: Conn) -> None:
        """``conn`` went away: start the disconnect timer (or remove now)."""
        if self.owner is not conn:
            return
        self.owner = None
        self._changed()
        if self.timeout <= 0:
            self._remove()
            return
        self._stop_timer()
        timer = self._timer = trio.CancelScope()
        self._state.nursery.start_soon(self._expire, timer)
        self._state.note_detached(self)

    async def _expire(self, timer: trio.CancelScope) -> None:
        with timer:
            await trio.sleep(self.timeout)
            if self.owner is None and self._timer is timer:
                logger.info("disconnect timeout expired; removing the session")
                self.expire_now()

    def expire_now(self) -> None:
        """Remove the session (or group) now, as if its disconnect timeout had run out."""
        self._stop_timer()
        self._remove()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._state.forget_detached(self)

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()


def _position_after(position: Position, batches: int) -> Position:
    slot, batch = position
    return (slot, batch + 1) if batch + 1 < batches else (slot + 1, 0)


def _agent_name(agent: dict[str, JsonValue], index: int) -> str:
    name = agent.get("name")
    return name if isinstance(name, str) else f"agent-{index}"


class Session:
    """One backtest session: a single session, or one sub-session of a parallel group."""

    def __init__(
        self,
        state: ServerState,
        *,
        session_id: str,
        request: CreateBacktestSessionRequest,
        start_slot: int,
        end_slot: int,
        numbered: bool,
        timeout: int = 0,
        group: ParallelGroup | None = None,
    ) -> None:
        config = state.config
        self._state = state
        self._chain = state.chain
        self._config = config
        self.id = session_id
        self.rpc_endpoint = f"/backtest/{session_id}"
        self.start_slot = start_slot
        self.end_slot = end_slot
        self.numbered = numbered
        self.group = group
        self.ownership = group.ownership if group else Ownership(state, timeout, self.remove)
        self.send_summary = request.send_summary
        self.agents = list(request.agents)
        self.signer_filter = frozenset(request.signer_filter)
        self.discoveries = _unique_filters(request.discoveries)
        self.log = ResponseLog(config.retained_responses)
        self.data = DataLog()
        self.progress = Signal()
        self.slot = start_slot
        self.batch = 0
        self.completed = False
        self.closed = False
        self.removed = False
        self.running = False
        self.owner_written = 0
        self.ready_seq: int | None = None
        self.ready_event: wire.ReadyForContinue | wire.Paused | None = None
        self.announced: Position | None = None
        self.executed_slots = 0
        self.correct = 0
        self.incorrect = 0
        self.balance_diff = 0
        self.log_diff = 0
        self.overrides: dict[str, AccountData] = {}
        self.chain = SessionChain(
            state.chain, state.chain_budget, extra_compute_units=request.extra_compute_units or 0
        )
        """The session's LiteSVM: user transactions, overrides, airdrops and RPC reads."""
        self._pending: list[VersionedTransaction] = []
        self._user_slot = (start_slot, 0)
        """(slot, user transactions published at it), for the per-slot bound."""
        self._step_scope: trio.CancelScope | None = None
        self.ownership.on_change.append(self.notify_progress)

    def __repr__(self) -> str:
        return f"<Session {self.id} slot={self.slot}>"

    # -- state -------------------------------------------------------------------------------

    @property
    def owner(self) -> Conn | None:
        return self.ownership.owner

    @property
    def ended(self) -> bool:
        """No more slots will run: completed, closed or removed."""
        return self.completed or self.closed or self.removed

    @property
    def gone(self) -> bool:
        """Closed or removed: its data-plane connections close once drained."""
        return self.closed or self.removed

    @property
    def position(self) -> Position:
        return (self.slot, self.batch)

    def notify_progress(self) -> None:
        self.progress.notify()

    def note_written(self, seq: int) -> None:
        """The owner's connection has sent everything up to ``seq``."""
        self.owner_written = seq
        self.progress.notify()

    def emit(self, response: Emitted) -> int:
        return self.log.append(response)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Emit the opening events: two statuses, the start slot, readiness."""
        self.emit(wire.Status(BacktestStatus.PREPARING_BUNDLE))
        self.emit(wire.Status(BacktestStatus.BUNDLE_READY))
        self.emit(SlotNotification(self.start_slot))
        if self._discovery_programs():
            # The first announcement may scan far: it runs as a step, between checkpoints.
            self._spawn(self._announce, wire.ReadyForContinue())
        else:
            self._become_ready(wire.ReadyForContinue(), None)

    def close(self) -> None:
        """``closeBacktestSession`` / ``closeSessionV1``: answer ``success`` and end."""
        self._cancel_step()
        self.closed = True
        self._clear_ready()
        self.emit(Success())
        self.data.signal.notify()
        self.chain.release()
        self._state.forget_session(self)

    def remove(self) -> None:
        """Drop the session for good (disconnect timeout, or its parallel group went away)."""
        if self.removed:
            return
        self.removed = True
        self._cancel_step()
        self._clear_ready()
        self.data.signal.notify()
        self.log.signal.notify()
        self.chain.release()
        self._state.forget_session(self)

    def _cancel_step(self) -> None:
        if self._step_scope is not None:
            self._step_scope.cancel()
        self.running = False

    # -- requests ----------------------------------------------------------------------------

    def request_continue(self, params: ContinueParams) -> None:
        if self._refuse_step():
            return
        # Everything is checked before anything changes: a refused continue leaves no trace.
        decoded = self._decode_transactions(params.transactions)
        if isinstance(decoded, BacktestError):
            self.emit(Error(decoded))
            return
        problem = self._validate(params)
        if problem is None and decoded:
            problem = self._ensure_chain()
            if problem is None and len(decoded) > self.user_room():
                problem = InvalidRequest(
                    f"more than {self._config.max_user_transactions_per_slot} user transactions "
                    "in one slot"
                )
        if problem is None:
            problem = self._apply_accounts(params.modify_account_states)
        if problem is not None:
            self.emit(Error(problem))
            return
        for address, account in params.modify_account_states.items():
            self.overrides[address] = account
        # Executed after the historical transactions of the next slot that runs (with
        # advanceCount 0 that is a later step's: they wait, never dropped).
        self._pending.extend(decoded)
        self.emit(wire.Status(BacktestStatus.DECODED_TRANSACTIONS))
        self._spawn(self._run_count, params.advance_count)

    def request_continue_to(self, params: ContinueToParams) -> None:
        if self._refuse_step():
            return
        batches = self._chain.batches_per_slot
        if params.batch_index is None or params.batch_index >= batches:
            target = (params.slot + 1, 0)
        else:
            target = (params.slot, params.batch_index)
        if params.slot > self.end_slot:
            self.emit(Error(InvalidRequest(f"continueTo slot {params.slot} is past the end slot")))
            return
        if target < self.position:
            self.emit(Error(InvalidRequest("continueTo target is behind the current position")))
            return
        self._spawn(self._run_to, target, params)

    def _refuse_step(self) -> bool:
        if self.ended:
            self.emit(Error(NoMoreBlocks()))
            return True
        if self.running:
            self.emit(Error(InvalidRequest("a step is still running")))
            return True
        return False

    @staticmethod
    def _decode_transactions(texts: list[str]) -> list[VersionedTransaction] | BacktestError:
        out: list[VersionedTransaction] = []
        for index, text in enumerate(texts):
            try:
                out.append(decode_base64_transaction(text))
            except TransactionRejected as exc:
                return InvalidTransactionEncoding(index, str(exc))
        return out

    def _apply_accounts(self, states: Mapping[str, AccountData]) -> BacktestError | None:
        """Write overrides to the chain now (all or nothing), so the next slot sees them."""
        if not states:
            return None
        try:
            self.chain.set_accounts(states, self.slot)
        except AccountRejected as exc:
            return _account_error(exc)
        except ChainUnavailable as exc:
            return InvalidRequest(str(exc))
        return None

    def _ensure_chain(self) -> BacktestError | None:
        """Make the LiteSVM now, so a spent budget refuses the continue, not its step."""
        try:
            self.chain.svm_at(self.slot)
        except ChainUnavailable as exc:
            return InvalidRequest(str(exc))
        return None

    def _validate(self, params: ContinueParams) -> BacktestError | None:
        for address, account in params.modify_account_states.items():
            if not is_address(address):
                return InvalidAccountPubkey(address, "not a 32-byte base58 address")
            if not is_address(account.owner):
                return InvalidAccountOwner(address, "owner is not a 32-byte base58 address")
            if account.data.encoding == "base64":
                try:
                    base64.b64decode(account.data.data, validate=True)
                except (binascii.Error, ValueError) as exc:
                    return InvalidAccountEncoding(address, "base64", f"invalid base64: {exc}")
        return None

    # -- execution ---------------------------------------------------------------------------

    def _spawn(self, body: Callable[..., object], *args: object) -> None:
        self.running = True
        self._clear_ready()
        self._state.nursery.start_soon(self._step, body, args)

    async def _step(self, body: Callable[..., object], args: tuple[object, ...]) -> None:
        with trio.CancelScope() as scope:
            self._step_scope = scope
            try:
                await body(*args)  # type: ignore[misc]
            except _StepAborted:
                pass
            except Exception:
                logger.exception("step of session %s failed", self.id)
                self.emit(Error(Internal("the server failed while executing a step")))
            finally:
                if self._step_scope is scope:
                    self._step_scope = None
                    self.running = False

    async def _run_count(self, count: int) -> None:
        for _ in range(count):
            await self._pace()
            if self._finish_slot():
                return
        await self._announce(wire.ReadyForContinue())

    async def _run_to(self, target: Position, params: ContinueToParams) -> None:
        while self.position < target:
            await self._pace()
            if self.slot < target[0]:
                if self._finish_slot():
                    return
            else:
                for batch in range(self.batch, target[1]):
                    self._execute_batch(self.slot, batch)
                self.batch = target[1]
        await self._announce(wire.Paused(PausedEvent(params.slot, params.batch_index)))

    async def _pace(self) -> None:
        """One slot's worth of time, then wait until every live reader has caught up.

        A task woken just as the session is closed may resume once more before its
        cancellation lands, so the session state is re-checked after every wait.
        """
        if self._config.slot_delay > 0:
            await trio.sleep(self._config.slot_delay)
        else:
            await trio.lowlevel.checkpoint()
        min_slot = self._retention_floor(self.slot)
        while not self.gone and (self._control_lagging() or self.data.lagging(min_slot)):
            await self.progress.event.wait()
        if self.gone:
            raise _StepAborted

    def _control_lagging(self) -> bool:
        owner = self.owner
        if owner is None or owner.stalled or owner.gone:
            return False
        config = self._config
        return (
            self.log.last_seq - self.owner_written > config.control_backlog
            or self.log.bytes_after(self.owner_written) > config.control_backlog_bytes
        )

    def _retention_floor(self, newest: int) -> int:
        """The oldest slot the data log keeps: the last ``retained_slots`` up to ``newest``,
        fewer if their events count for more than ``retained_bytes``."""
        floor = newest - self._config.retained_slots + 1
        by_bytes = self.data.byte_floor(self._config.retained_bytes)
        return floor if by_bytes is None else max(floor, by_bytes)

    def _finish_slot(self) -> bool:
        """Run the rest of the current slot; True when that completed the session."""
        slot = self.slot
        for batch in range(self.batch, self._chain.batches_per_slot):
            self._execute_batch(slot, batch)
        if self._pending:
            pending, self._pending = self._pending, []
            for tx in pending:
                self.execute_user(tx)
        self.executed_slots += 1
        floor = self._retention_floor(slot)
        if floor > slot - self._config.retained_slots + 1:
            self.data.cut_below = max(self.data.cut_below, floor)
        self.data.trim(floor)
        if slot >= self.end_slot:
            self._complete()
            return True
        self.slot = slot + 1
        self.batch = 0
        self.emit(SlotNotification(self.slot))
        return False

    def _execute_batch(self, slot: int, batch: int) -> None:
        cfg = self._chain
        for tx in chain.batch_transactions(cfg, slot, batch):
            if tx.fee_payer in self.signer_filter:
                continue
            if tx.mismatch:
                self.incorrect += 1
                if tx.index % 2:
                    self.balance_diff += 1
                else:
                    self.log_diff += 1
            else:
                self.correct += 1
            shared = LazyNotification(
                functools.partial(_transaction_note, cfg, tx),
                functools.partial(_synthetic_logs, cfg, tx),
            )
            for program in tx.program_ids:
                self.data.append(
                    ("transaction", program), slot, shared, SYNTHETIC_TRANSACTION_BYTES
                )
            if not tx.success:
                continue
            for owner in tx.program_ids:
                account = _touched_account(cfg, tx, owner)
                if account is None:
                    continue
                override = self.overrides.pop(account, None)
                build = functools.partial(_diff_note, cfg, tx, account, override)
                self.data.append(
                    ("account", owner), slot, LazyNotification(build), SYNTHETIC_DIFF_BYTES
                )
        self.data.signal.notify()

    def execute_user(self, tx: VersionedTransaction) -> Executed:
        """Execute a user transaction at the current slot and report it everywhere.

        Counted in the summary by its result; its transaction, logs and account-diff
        notifications join the data log at the current slot.
        """
        done = self.chain.execute(tx, self.slot)
        if done.success:
            self.correct += 1
        else:
            self.incorrect += 1
        self.publish(done)
        return done

    def user_room(self) -> int:
        """How many more user transactions the current slot takes (the data log's bound).

        Those a zero-slot continue left waiting count: they run in this slot.
        """
        slot, used = self._user_slot
        used = (used if slot == self.slot else 0) + len(self._pending)
        if self.data.slot_bytes(self.slot) >= self._config.retained_bytes:
            return 0
        return self._config.max_user_transactions_per_slot - used

    def publish(self, done: Executed) -> None:
        """Put an executed transaction's notifications in the data log."""
        slot = done.slot
        used = self._user_slot[1] if self._user_slot[0] == slot else 0
        self._user_slot = (slot, used + 1)
        note = LazyNotification(
            functools.partial(TransactionNotification, 0, slot, done.payload),
            functools.partial(logs_notification_text, slot, done.signature, done.err, done.logs),
        )
        if done.programs:
            # Built now to be counted (the notification and its logs view): user payloads
            # can be large, unlike synthetic ones.
            size = len(note.text_for(0)) + len(note.text_for(0, logs=True))
            for program in done.programs:
                self.data.append(("transaction", program), slot, note, size)
        for written in done.written:
            diff = LazyNotification(functools.partial(_written_note, slot, done.signature, written))
            size = _written_size(written)
            for owner in written.owners:
                self.data.append(("account", owner), slot, diff, size)
        self.data.signal.notify()

    def _complete(self) -> None:
        self.completed = True
        self.running = False
        summary = (
            SessionSummary(
                correct_simulation=self.correct,
                incorrect_simulation=self.incorrect,
                balance_diff=self.balance_diff,
                log_diff=self.log_diff,
            )
            if self.send_summary
            else None
        )
        agent_stats: list[AgentStatsReport] | None = None
        if self.agents and self.group is None:
            agent_stats = [
                AgentStatsReport(_agent_name(agent, k), slots_processed=self.executed_slots)
                for k, agent in enumerate(self.agents)
            ]
        self.emit(wire.Completed(summary, agent_stats))
        self.data.signal.notify()

    # -- readiness and discoveries -----------------------------------------------------------

    async def _announce(self, event: wire.ReadyForContinue | wire.Paused) -> None:
        """End a step: find the next discovery (between checkpoints), then announce both.

        The step is still running while the scan goes on, so nothing else is emitted in
        between: readiness and its discovery come out in the same order as ever.
        """
        found = await self._next_discovery()
        self.running = False
        self._become_ready(event, found)

    def _become_ready(
        self, event: wire.ReadyForContinue | wire.Paused, discovery: DiscoveryBatchEvent | None
    ) -> None:
        self.ready_seq = self.emit(event)
        self.ready_event = event
        if discovery is not None:
            self.emit(wire.DiscoveryBatch(discovery))
            assert discovery.batch_index is not None, "the scan always names the batch"
            self.announced = (discovery.slot, discovery.batch_index)

    def _clear_ready(self) -> None:
        self.ready_seq = None
        self.ready_event = None

    def resend_readiness(self, cursor: int | None) -> bool:
        """§6.8: re-announce readiness the attaching client has already seen but not answered."""
        event, seq = self.ready_event, self.ready_seq
        if event is None or seq is None or cursor is None or seq > cursor:
            return False
        if self.running or self.ended:
            return False
        self.ready_seq = self.emit(event)
        return True

    def _discovery_programs(self) -> set[str]:
        """The chain's programs some ``ProgramExecuted`` filter of the session names."""
        return {f.program_id for f in self.discoveries if isinstance(f, ProgramExecuted)} & set(
            self._chain.program_ids
        )

    async def _next_discovery(self) -> DiscoveryBatchEvent | None:
        """The next batch a discovery filter matches, at most ``_DISCOVERY_SCAN_SLOTS`` ahead.

        A checkpoint every ``_SCAN_CHECKPOINT_SLOTS`` slots keeps the server (and Ctrl-C)
        responsive during a long scan; a session closed meanwhile ends the step.
        """
        if not self._discovery_programs():
            return None
        start = self.position
        if self.announced is not None and self.announced >= start:
            start = _position_after(self.announced, self._chain.batches_per_slot)
        slot, first_batch = start
        cfg = self._chain
        # Bounded per announcement; a later readiness resumes the scan from further on.
        last = min(self.end_slot, start[0] + _DISCOVERY_SCAN_SLOTS - 1)
        scanned = 0
        while slot <= last:
            if scanned and scanned % _SCAN_CHECKPOINT_SLOTS == 0:
                await trio.lowlevel.checkpoint()
                if self.gone:
                    raise _StepAborted
            found = self._match_in(cfg, slot, first_batch)
            if found is not None:
                return found
            slot += 1
            first_batch = 0
            scanned += 1
        return None

    def _match_in(
        self, cfg: chain.ChainConfig, slot: int, first_batch: int
    ) -> DiscoveryBatchEvent | None:
        """The first batch of ``slot`` from ``first_batch`` on that a filter matches."""
        for batch in range(first_batch, cfg.batches_per_slot):
            txs = [
                tx
                for tx in chain.batch_transactions(cfg, slot, batch)
                if tx.fee_payer not in self.signer_filter
            ]
            involved = {p for tx in txs for p in tx.program_ids}
            matched: list[DiscoveryFilter] = [
                f
                for f in self.discoveries
                if isinstance(f, ProgramExecuted) and f.program_id in involved
            ]
            if matched:
                encoded = [
                    EncodedBinary(
                        base64.b64encode(chain.serialize_transaction(cfg, tx)).decode("ascii")
                    )
                    for tx in txs
                ]
                return DiscoveryBatchEvent(slot, batch, matched, encoded)
        return None


def _transaction_note(cfg: chain.ChainConfig, tx: chain.SyntheticTransaction) -> Notification:
    return TransactionNotification(0, tx.slot, chain.transaction_payload(cfg, tx))


def _synthetic_logs(cfg: chain.ChainConfig, tx: chain.SyntheticTransaction) -> str:
    err = None if tx.success else chain.transaction_error(cfg, tx)
    return logs_notification_text(tx.slot, tx.signature, err, tx.log_messages)


def _written_size(written: WrittenAccount) -> int:
    """What an account diff counts for: its data in base64, before and after, and the rest."""
    size = DIFF_OVERHEAD_BYTES
    for account in (written.pre, written.post):
        if account is not None:
            size += 4 * ((len(account.data) + 2) // 3)
    return size


def _written_note(slot: int, signature: str, written: WrittenAccount) -> Notification:
    return AccountDiffNotification(
        0, slot, written.address, signature, account_json(written.pre), account_json(written.post)
    )


def _account_error(exc: AccountRejected) -> BacktestError:
    """The control-plane error for an account override the chain refused."""
    if exc.kind == "pubkey":
        return InvalidAccountPubkey(exc.address, exc.reason)
    if exc.kind == "owner":
        return InvalidAccountOwner(exc.address, exc.reason)
    return InvalidAccountEncoding(exc.address, "base64", exc.reason)


def _touched_account(
    cfg: chain.ChainConfig, tx: chain.SyntheticTransaction, owner: str
) -> str | None:
    """The account of ``owner`` that ``tx`` changes (the chain touches one per program)."""
    pool = chain.program_accounts(cfg, owner)
    for account in tx.accounts:
        if account in pool:
            return account
    return None


def _diff_note(
    cfg: chain.ChainConfig,
    tx: chain.SyntheticTransaction,
    account: str,
    override: AccountData | None,
) -> Notification:
    for diff in chain.account_diffs(cfg, tx):
        if diff.account == account:
            pre = account_data_json(override) if override is not None else diff.pre
            return AccountDiffNotification(0, tx.slot, account, diff.signature, pre, diff.post)
    raise AssertionError("the chain has no diff for a touched account")


def _unique_filters(filters: Iterable[DiscoveryFilter]) -> list[DiscoveryFilter]:
    out: list[DiscoveryFilter] = []
    for f in filters:
        if f not in out:
            out.append(f)
    return out


class ParallelGroup:
    """The sub-sessions of one parallel create, streamed over one control connection."""

    def __init__(self, state: ServerState, group_id: str, timeout: int) -> None:
        self.id = group_id
        self._state = state
        self.subs: list[Session] = []
        self.ownership = Ownership(state, timeout, self.remove)
        self.removed = False

    def __repr__(self) -> str:
        return f"<ParallelGroup {self.id} subs={len(self.subs)}>"

    def sub(self, session_id: str) -> Session | None:
        for session in self.subs:
            if session.id == session_id:
                return session
        return None

    def remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        for session in self.subs:
            session.remove()
        self._state.forget_group(self)
