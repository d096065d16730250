"""How executed transactions become data-plane events in a session's data log.

Synthetic (historical) transactions and the user's own ones both put a transaction event per
program they involve (which also carries its ``logsNotification``) and an account-diff event
per program owning an account they changed. Payloads are built lazily; what each event counts
for against ``retained_bytes`` is fixed for synthetic events and measured for the user's.
"""

from __future__ import annotations

__all__: list[str] = []

import functools
from typing import TYPE_CHECKING, Final

from simtrio.server import chain
from simtrio.server.data_log import LazyNotification
from simtrio.server.pubsub import logs_notification_text
from simtrio.server.solana_json import account_json
from simtrio.wire.jsonrpc import account_data_json
from simtrio.wire.rpc import AccountDiffNotification, TransactionNotification

if TYPE_CHECKING:
    from simtrio.server.data_log import DataLog, Notification
    from simtrio.server.executor import Executed, WrittenAccount
    from simtrio.wire.types import AccountData

SYNTHETIC_TRANSACTION_BYTES: Final = 4_096
"""What a synthetic transaction's event counts for against ``retained_bytes`` (its
notification and its logs view are below 3.5 KiB)."""
SYNTHETIC_DIFF_BYTES: Final = 1_024
"""What a synthetic account diff counts for (below 700 bytes encoded)."""
DIFF_OVERHEAD_BYTES: Final = 1_024
"""What a user account diff counts for beyond its account data (keys, owners, lamports...)."""


def append_synthetic(
    data: DataLog,
    cfg: chain.ChainConfig,
    slot: int,
    tx: chain.SyntheticTransaction,
    overrides: dict[str, AccountData],
) -> None:
    """Add a historical transaction's events; an override it meets is its diff's ``pre``."""
    shared = LazyNotification(
        functools.partial(_transaction_note, cfg, tx),
        functools.partial(_synthetic_logs, cfg, tx),
    )
    for program in tx.program_ids:
        data.append(("transaction", program), slot, shared, SYNTHETIC_TRANSACTION_BYTES)
    if not tx.success:
        return
    for owner in tx.program_ids:
        account = _touched_account(cfg, tx, owner)
        if account is None:
            continue
        override = overrides.pop(account, None)
        build = functools.partial(_diff_note, cfg, tx, account, override)
        data.append(("account", owner), slot, LazyNotification(build), SYNTHETIC_DIFF_BYTES)


def append_executed(data: DataLog, done: Executed) -> None:
    """Add a user transaction's events, at the slot it was executed at."""
    slot = done.slot
    note = LazyNotification(
        functools.partial(TransactionNotification, 0, slot, done.payload),
        functools.partial(logs_notification_text, slot, done.signature, done.err, done.logs),
    )
    if done.programs:
        # Built now to be counted (the notification and its logs view): user payloads
        # can be large, unlike synthetic ones.
        size = len(note.text_for(0)) + len(note.text_for(0, logs=True))
        for program in done.programs:
            data.append(("transaction", program), slot, note, size)
    for written in done.written:
        diff = LazyNotification(functools.partial(_written_note, slot, done.signature, written))
        size = _written_size(written)
        for owner in written.owners:
            data.append(("account", owner), slot, diff, size)


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
