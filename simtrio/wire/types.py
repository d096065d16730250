"""The control-plane protocol as plain data.

Every class mirrors one message or payload of the wire protocol. They hold decoded values only:
spelling, tagging and tolerance live in :mod:`simtrio.wire.spellings` and the codecs, so these
classes stay free of JSON details and can be built by hand in tests and by the reference server
alike.

Payload structs double as request variants: ``ContinueParams`` *is* the ``continue`` request,
``CreateBacktestSessionRequest`` *is* ``createBacktestSession``, and so on, which is how the
wire's newtype variants behave. The errors the server reports are in
:mod:`simtrio.wire.backtest_errors`.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
from collections.abc import Mapping
from typing import TypeAlias

import attrs

# Imported at runtime (not only for type checking) so ``attrs.resolve_types`` works on the
# classes that hold them.
from simtrio.wire.backtest_errors import BacktestError
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.rules import kind_key

# --------------------------------------------------------------------------------------------
# Shared payloads
# --------------------------------------------------------------------------------------------


@attrs.frozen
class EncodedBinary:
    """Binary data as text; ``base64`` is the only encoding in use, others are kept as given."""

    data: str
    encoding: str = "base64"


@attrs.frozen
class AccountData:
    """An account state, as sent in ``modifyAccountStates``."""

    data: EncodedBinary
    executable: bool
    lamports: int
    owner: str
    space: int


@attrs.frozen
class ProgramExecuted:
    """Discovery filter: batches in which this program executes."""

    program_id: str


@attrs.frozen
class UnknownDiscoveryFilter:
    """A discovery filter simtrio does not know; re-encodes verbatim."""

    raw: JsonValue


DiscoveryFilter: TypeAlias = ProgramExecuted | UnknownDiscoveryFilter
"""A discovery filter (protocol §4.5), externally tagged on the wire:
``{"ProgramExecuted": "<program id>"}``.

Registered through ``CreateSession(discoveries=...)``; ``DiscoveryBatchEvent.matched`` lists
the ones a batch hits. Any other tag decodes to ``UnknownDiscoveryFilter``.
"""


class BacktestStatus(enum.StrEnum):
    """Phase of a session. Unknown values become preserved pseudo-members, never errors."""

    PREPARING_BUNDLE = "preparingBundle"
    BUNDLE_READY = "bundleReady"
    STARTING_RUNTIME = "startingRuntime"
    PROGRAM_ACCOUNTS_LOADED = "programAccountsLoaded"
    DECODED_TRANSACTIONS = "decodedTransactions"
    APPLIED_ACCOUNT_MODIFICATIONS = "appliedAccountModifications"
    READY_TO_EXECUTE_USER_TRANSACTIONS = "readyToExecuteUserTransactions"
    EXECUTED_USER_TRANSACTIONS = "executedUserTransactions"
    EXECUTING_BLOCK_TRANSACTIONS = "executingBlockTransactions"
    EXECUTED_BLOCK_TRANSACTIONS = "executedBlockTransactions"

    @classmethod
    def _missing_(cls, value: object) -> BacktestStatus | None:
        if not isinstance(value, str):
            return None
        key = kind_key(value)
        for member in cls:
            if kind_key(member.value) == key:
                return member
        pseudo = str.__new__(cls, value)
        pseudo._name_ = value
        pseudo._value_ = value
        return pseudo

    @property
    def is_known(self) -> bool:
        """False for a value this version of simtrio does not know."""
        return self._name_ in type(self).__members__

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class SessionSummary:
    """Outcome counters of a finished session; missing counters are 0."""

    correct_simulation: int = 0
    incorrect_simulation: int = 0
    execution_errors: int = 0
    balance_diff: int = 0
    log_diff: int = 0

    def has_deviations(self) -> bool:
        """True when anything other than ``correct_simulation`` is non-zero."""
        return bool(
            self.incorrect_simulation or self.execution_errors or self.balance_diff or self.log_diff
        )

    def total_transactions(self) -> int:
        return self.correct_simulation + self.incorrect_simulation


@attrs.frozen
class AgentStatsReport:
    """Per-agent counters reported with ``completed``."""

    name: str
    slots_processed: int = 0
    opportunities_found: int = 0
    opportunities_skipped: int = 0
    no_routes: int = 0
    txs_produced: int = 0
    expected_gain_by_mint: dict[str, int] = attrs.field(factory=dict[str, int])
    txs_submitted: int = 0
    txs_failed: int = 0
    txs_simulation_rejected: int = 0
    txs_simulation_failed: int = 0


@attrs.frozen
class PausedEvent:
    """Where a ``continueTo`` stopped; ``batch_index`` None means the block boundary."""

    slot: int
    batch_index: int | None = None


@attrs.frozen
class DiscoveryBatchEvent:
    """A batch that matches registered discovery filters, announced before it runs."""

    slot: int
    batch_index: int | None
    matched: list[DiscoveryFilter] = attrs.field(factory=list[DiscoveryFilter])
    transactions: list[EncodedBinary] = attrs.field(factory=list[EncodedBinary])


@attrs.frozen
class AvailableRange:
    """One snapshot bundle a server can replay (``GET /available-ranges``)."""

    bundle_start_slot: int
    snapshot_slot: int | None = None
    snapshot_slot_utc: str | None = None
    bundle_start_slot_utc: str | None = None
    max_bundle_end_slot: int | None = None
    max_bundle_end_slot_utc: str | None = None


# --------------------------------------------------------------------------------------------
# Requests (client -> server)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class CreateBacktestSessionRequest:
    """``createBacktestSession``: every key is always sent, in this order."""

    start_slot: int
    end_slot: int
    signer_filter: list[str] = attrs.field(factory=list[str])
    send_summary: bool = False
    capacity_wait_timeout_secs: int | None = None
    disconnect_timeout_secs: int | None = None
    extra_compute_units: int | None = None
    agents: list[dict[str, JsonValue]] = attrs.field(factory=list[dict[str, JsonValue]])
    discoveries: list[DiscoveryFilter] = attrs.field(factory=list[DiscoveryFilter])
    parallel: bool = False


@attrs.frozen
class ContinueParams:
    """``continue``: run ``advance_count`` slots, then wait again."""

    advance_count: int
    transactions: list[str] = attrs.field(factory=list[str])
    modify_account_states: Mapping[str, AccountData] = attrs.field(factory=dict[str, AccountData])


@attrs.frozen
class ContinueToParams:
    """``continueTo``: run up to, not including, batch ``batch_index`` of ``slot``."""

    slot: int
    batch_index: int | None = None


@attrs.frozen
class ContinueSessionRequestV1:
    """``continueSessionV1``: a continue routed to one sub-session of a parallel run."""

    session_id: str
    request: ContinueParams


@attrs.frozen
class ContinueToSessionRequestV1:
    """``continueToSessionV1``: a continueTo routed to one sub-session."""

    session_id: str
    request: ContinueToParams


@attrs.frozen
class CloseSessionRequestV1:
    """``closeSessionV1``: end one sub-session."""

    session_id: str


@attrs.frozen
class CloseBacktestSession:
    """``closeBacktestSession``: end the session; the server answers ``success``."""


@attrs.frozen
class AttachBacktestSession:
    """``attachBacktestSession``: take over a session; ``last_sequence`` None replays all."""

    session_id: str
    last_sequence: int | None = None


@attrs.frozen
class ResumeAttachedSession:
    """``resumeAttachedSession``: sent once the data plane is rebuilt after an attach."""


@attrs.frozen
class AttachParallelControlSessionV2:
    """``attachParallelControlSessionV2`` with the cursor of every sub-session that has one."""

    control_session_id: str
    last_sequences: Mapping[str, int] = attrs.field(factory=dict[str, int])


@attrs.frozen
class UnknownRequest:
    """A request the decoder (server side) could not read; ``reason`` says why."""

    method: str | None
    params: JsonValue
    reason: str = "unknown method"


BacktestRequest: TypeAlias = (
    CreateBacktestSessionRequest
    | ContinueParams
    | ContinueToParams
    | ContinueSessionRequestV1
    | ContinueToSessionRequestV1
    | CloseBacktestSession
    | CloseSessionRequestV1
    | AttachBacktestSession
    | ResumeAttachedSession
    | AttachParallelControlSessionV2
)
"""Any control-plane request a client sends (protocol §3): one ``{"method", "params"}`` object.

What ``encode`` writes and, on the server side, ``decode_request`` reads.
"""

# --------------------------------------------------------------------------------------------
# Responses (server -> client) and session events
# --------------------------------------------------------------------------------------------


@attrs.frozen
class SessionCreated:
    """``sessionCreated``: the reply to ``createBacktestSession``, one per sub-session if parallel.

    ``rpc_endpoint`` is as sent, possibly relative (``resolve_rpc_url`` makes it absolute);
    ``task_id`` is opaque, None when the server sends none.
    """

    session_id: str
    rpc_endpoint: str
    task_id: str | None = None


@attrs.frozen
class SessionAttached:
    """``sessionAttached``: the reply to ``attachBacktestSession``, after the replayed responses."""

    session_id: str
    rpc_endpoint: str
    task_id: str | None = None


@attrs.frozen
class SessionsCreated:
    """Legacy terminal reply of a parallel create (decode only)."""

    session_ids: list[str]


@attrs.frozen
class SessionsCreatedV2:
    """Terminal reply of a parallel create; arrays are parallel to ``session_ids``."""

    control_session_id: str
    session_ids: list[str]
    task_ids: list[str | None] = attrs.field(factory=list[str | None])
    start_slots: list[int] = attrs.field(factory=list[int])
    end_slots: list[int] = attrs.field(factory=list[int])


@attrs.frozen
class ParallelSessionAttachedV2:
    """``parallelSessionAttachedV2``: the reply to ``attachParallelControlSessionV2``.

    Sent after each sub-session's missed events; ``task_ids`` is parallel to ``session_ids``.
    """

    control_session_id: str
    session_ids: list[str]
    task_ids: list[str | None] = attrs.field(factory=list[str | None])


@attrs.frozen
class ReadyForContinue:
    """The session waits for ``continue`` or ``continueTo``."""


@attrs.frozen
class SlotNotification:
    """``slotNotification``: the session is at ``slot``; sent at its start and as it advances."""

    slot: int


@attrs.frozen
class Paused:
    """Stopped at a ``continueTo`` target; ready again."""

    event: PausedEvent


@attrs.frozen
class DiscoveryBatch:
    """``discoveryBatch``: announces a batch, not yet run, that matches a registered filter.

    ``continueTo(event.slot, event.batch_index)`` pauses the session just before it runs.
    """

    event: DiscoveryBatchEvent


@attrs.frozen
class Error:
    """``error``: the server reports a ``BacktestError`` (protocol §5), held in ``error``.

    The plain client raises it as ``RemoteError``; managed sessions deliver non-terminal ones
    as ``ErrorEvent`` and fail on terminal ones (protocol §5.3 says where each applies).
    """

    error: BacktestError


@attrs.frozen
class Success:
    """Reply to ``closeBacktestSession`` and ``resumeAttachedSession``."""


@attrs.frozen
class Completed:
    """End of the range; ``summary`` is None unless ``sendSummary`` was requested."""

    summary: SessionSummary | None = None
    agent_stats: list[AgentStatsReport] | None = None


@attrs.frozen
class Status:
    """``status``: the session entered phase ``status``, possibly one simtrio does not know."""

    status: BacktestStatus


@attrs.frozen
class UnknownSessionEvent:
    """A session event of a kind (or shape) simtrio does not know, kept as raw JSON."""

    raw: JsonValue


TopLevelEvent: TypeAlias = (
    ReadyForContinue
    | SlotNotification
    | Paused
    | DiscoveryBatch
    | Error
    | Success
    | Completed
    | Status
)
"""What a single session sends at top level (protocol §4.1) and a ``sessionEventV2`` carries."""

SessionEvent: TypeAlias = TopLevelEvent | UnknownSessionEvent
"""The ``event`` of one sub-session in ``sessionEventV2`` (or legacy ``sessionEventV1``).

A :data:`TopLevelEvent`, or ``UnknownSessionEvent`` for a kind or shape simtrio does not know.
"""


@attrs.frozen
class SessionEventV1:
    """Legacy multiplexed event without a sequence number (decode only)."""

    session_id: str
    event: SessionEvent


@attrs.frozen
class SessionEventV2:
    """One sub-session's event on a multiplexed parallel connection, numbered per session."""

    session_id: str
    seq_id: int
    event: SessionEvent


@attrs.frozen
class UnknownResponse:
    """A response with an unknown method, or whose params do not fit its method."""

    method: str
    params: JsonValue = None


BacktestResponse: TypeAlias = (
    SessionCreated
    | SessionAttached
    | SessionsCreated
    | SessionsCreatedV2
    | ParallelSessionAttachedV2
    | TopLevelEvent
    | SessionEventV1
    | SessionEventV2
    | UnknownResponse
)
"""Any control-plane message the server sends (protocol §4): one ``{"method", "params"}`` object.

What ``decode_response`` and ``decode_frame`` return and the plain client's
``next_response`` yields; an unrecognised method is ``UnknownResponse``.
"""
