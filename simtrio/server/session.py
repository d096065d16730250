"""Server-side sessions: what a backtest session is, independent of any connection.

A session owns two append-only logs: its numbered control-plane responses
(:mod:`~simtrio.server.response_log`) and its retained data-plane events
(:mod:`~simtrio.server.data_log`). Connections stream from them with cursors, so a session
keeps executing when its control connection goes away, and an attach is just a new cursor.

Steps run as tasks of the server, not of any connection. Memory stays bounded
by back-pressure: before each slot a step waits while a live, attached reader (control or
data) lags too far behind, in count or in bytes.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from typing import TYPE_CHECKING

import trio

from simtrio.server import chain
from simtrio.server.broadcast import Signal
from simtrio.server.data_log import DataLog
from simtrio.server.discovery import DiscoveryScan, Position, unique_filters
from simtrio.server.executor import AccountRejected, ChainUnavailable, Executed, SessionChain
from simtrio.server.notifications import append_executed, append_synthetic
from simtrio.server.ownership import Ownership
from simtrio.server.paths import session_path
from simtrio.server.response_log import Emitted, ResponseLog
from simtrio.server.validation import account_error, check_overrides, decode_transactions
from simtrio.wire import types as wire
from simtrio.wire.backtest_errors import (
    BacktestError,
    Internal,
    InvalidRequest,
    NoMoreBlocks,
)
from simtrio.wire.types import (
    AccountData,
    AgentStatsReport,
    BacktestStatus,
    ContinueParams,
    ContinueToParams,
    CreateBacktestSessionRequest,
    DiscoveryBatchEvent,
    Error,
    PausedEvent,
    SessionSummary,
    SlotNotification,
    Success,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from solders.transaction import VersionedTransaction

    from simtrio.server.conn import Conn
    from simtrio.server.state import ServerState
    from simtrio.wire.jsontext import JsonValue

logger = logging.getLogger(__name__)


class _StepAborted(Exception):
    """The session was closed or removed while a step was between slots."""


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
        self.rpc_endpoint = session_path(session_id)
        self.start_slot = start_slot
        self.end_slot = end_slot
        self.numbered = numbered
        self.group = group
        self.ownership = group.ownership if group else Ownership(state, timeout, self.remove)
        self.send_summary = request.send_summary
        self.agents = list(request.agents)
        self.signer_filter = frozenset(request.signer_filter)
        self.discovery = DiscoveryScan(
            state.chain, unique_filters(request.discoveries), self.signer_filter
        )
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
        if self.discovery.programs:
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
        decoded = decode_transactions(params.transactions)
        if isinstance(decoded, BacktestError):
            self.emit(Error(decoded))
            return
        problem = check_overrides(params.modify_account_states)
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

    def _apply_accounts(self, states: Mapping[str, AccountData]) -> BacktestError | None:
        """Write overrides to the chain now (all or nothing), so the next slot sees them."""
        if not states:
            return None
        try:
            self.chain.set_accounts(states, self.slot)
        except AccountRejected as exc:
            return account_error(exc)
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

    # -- execution ---------------------------------------------------------------------------

    def _spawn(self, body: Callable[..., object], *args: object) -> None:
        self.running = True
        self._clear_ready()
        self._state.spawn(self._step, body, args)

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
            append_synthetic(self.data, cfg, slot, tx, self.overrides)
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
        append_executed(self.data, done)
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
        found = await self.discovery.next_match(
            self.position, self.end_slot, self.announced, self._abort_if_gone
        )
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

    def _abort_if_gone(self) -> None:
        if self.gone:
            raise _StepAborted


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
