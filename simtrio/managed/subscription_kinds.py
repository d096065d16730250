"""What a data-plane subscription subscribes to, and how its notifications become events.

A :class:`SubscriptionKind` names the subscribe method of one kind (account diffs,
transactions, logs) and turns each of its notifications into the driver event of that kind.
"""

from __future__ import annotations

__all__: list[str] = []

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import attrs

from simtrio.errors import InvalidParams
from simtrio.events import AccountDiff, ProgramLogs, Transaction
from simtrio.wire.construct import plain_constructor
from simtrio.wire.rpc import (
    ACCOUNT_DIFF_SUBSCRIBE,
    LOGS_SUBSCRIBE,
    TRANSACTION_SUBSCRIBE,
    AccountDiffNotification,
    LogsNotification,
    TransactionNotification,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

E = TypeVar("E", bound=AccountDiff | Transaction | ProgramLogs)

Notification = AccountDiffNotification | TransactionNotification | LogsNotification
NOTIFICATION_TYPES: Final = frozenset(
    {AccountDiffNotification, TransactionNotification, LogsNotification}
)


@attrs.frozen
class SubscriptionKind(Generic[E]):
    """What a manager subscribes to and how a notification becomes a driver event.

    ``wrap`` gets the notification and its subscription's program id.
    """

    label: str
    method: str
    wrap: Callable[[Notification, str], E | None]


_new_account_diff: Final[Callable[[AccountDiffNotification], AccountDiff]] = plain_constructor(
    AccountDiff
)
_new_transaction: Final[Callable[[TransactionNotification], Transaction]] = plain_constructor(
    Transaction
)


def _wrap_account_diff(notification: Notification, program_id: str) -> AccountDiff | None:
    if type(notification) is AccountDiffNotification:
        return _new_account_diff(notification)
    return None


def _wrap_transaction(notification: Notification, program_id: str) -> Transaction | None:
    if type(notification) is TransactionNotification:
        return _new_transaction(notification)
    return None


def _wrap_logs(notification: Notification, program_id: str) -> ProgramLogs | None:
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


def check_program_ids(program_ids: Sequence[str]) -> tuple[str, ...]:
    if isinstance(program_ids, str):
        raise InvalidParams("program_ids must be a sequence of program ids, not a single str")
    ids = tuple(program_ids)
    if not ids:
        raise InvalidParams("program_ids must not be empty")
    for program_id in ids:
        if not isinstance(program_id, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidParams(f"program ids must be str, got {type(program_id).__name__}")
    return ids
