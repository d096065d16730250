"""Events a managed session hands to its driver.

Each class is a small frozen value, so drivers can ``match`` on them::

    match await session.next_event():
        case events.ReadyForContinue():
            await session.send_continue(simtrio.Continue())
        case events.Slot(slot):
            ...
        case events.Completed(summary, agent_stats):
            ...

They are deliberately separate from the wire responses: the wire says how the server spoke, the
events say what the driver must react to (duplicates removed, replies consumed, sub-sessions
demultiplexed).

Naming rule: ``Completed``, ``DiscoveryBatch``, ``Paused``, ``ReadyForContinue`` and ``Status``
exist both here and in :mod:`simtrio.wire.types`. Outside the wire package, simtrio never
imports these names bare: it writes ``events.Status`` (after ``from simtrio import events``) and
``wire.Status`` (after ``from simtrio.wire import types as wire``), so every use says which one
it means. Inside ``simtrio.wire``, which never imports this module, the wire names stand alone.
"""

from __future__ import annotations

__all__ = [
    "AccountDiff",
    "Completed",
    "DiscoveryBatch",
    "ErrorEvent",
    "Event",
    "Paused",
    "ProgramLogs",
    "ReadyForContinue",
    "Slot",
    "Status",
    "Transaction",
]

from typing import TypeAlias

import attrs

# Imported at runtime (not only for type checking) so ``typing.get_type_hints`` and
# ``attrs.resolve_types`` work on the events, e.g. for structuring them from recordings.
from simtrio.wire.backtest_errors import BacktestError
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.rpc import AccountDiffNotification, TransactionNotification
from simtrio.wire.types import (
    AgentStatsReport,
    BacktestStatus,
    DiscoveryBatchEvent,
    PausedEvent,
    SessionSummary,
)


@attrs.frozen
class ReadyForContinue:
    """The session waits for ``send_continue`` or ``send_continue_to``."""


@attrs.frozen
class Slot:
    """A slot was executed."""

    slot: int


@attrs.frozen
class Status:
    """The session entered a new phase; ``status`` is a ``BacktestStatus`` (possibly unknown)."""

    status: BacktestStatus


@attrs.frozen
class Paused:
    """A ``continue_to`` target was reached; the session is ready again."""

    event: PausedEvent


@attrs.frozen
class DiscoveryBatch:
    """A batch matching the registered discovery filters is about to run."""

    event: DiscoveryBatchEvent


@attrs.frozen
class ErrorEvent:
    """A non-fatal error reported by the server; the session goes on."""

    error: BacktestError


@attrs.frozen
class Completed:
    """The range is done. Always the last event; drained notifications precede it."""

    summary: SessionSummary | None = None
    agent_stats: list[AgentStatsReport] | None = None


@attrs.frozen
class Transaction:
    """A data-plane transaction notification."""

    notification: TransactionNotification


@attrs.frozen
class AccountDiff:
    """A data-plane account diff; ``notification.context.slot`` is its slot."""

    notification: AccountDiffNotification


@attrs.frozen
class ProgramLogs:
    """A data-plane ``logsNotification``: the log lines of one transaction that mentions
    ``program_id`` (the subscription's program); ``err`` is its raw JSON error, None when it
    succeeded."""

    slot: int
    signature: str
    err: JsonValue
    logs: tuple[str, ...]
    program_id: str


Event: TypeAlias = (
    ReadyForContinue
    | Slot
    | Status
    | Paused
    | DiscoveryBatch
    | ErrorEvent
    | Completed
    | Transaction
    | AccountDiff
    | ProgramLogs
)
"""Anything ``next_event()`` can return."""
