"""Checks on a continue's payload, made before anything about the session changes.

A refused continue leaves no trace: its transactions are decoded and its account overrides
checked first, and the first problem found is the control-plane error it is answered with.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
import binascii
from typing import TYPE_CHECKING

from simtrio.server.executor import TransactionRejected, decode_base64_transaction
from simtrio.wire.backtest_errors import (
    InvalidAccountEncoding,
    InvalidAccountOwner,
    InvalidAccountPubkey,
    InvalidTransactionEncoding,
)
from simtrio.wire.base58 import is_address

if TYPE_CHECKING:
    from collections.abc import Mapping

    from solders.transaction import VersionedTransaction

    from simtrio.server.executor import AccountRejected
    from simtrio.wire.backtest_errors import BacktestError
    from simtrio.wire.types import AccountData


def decode_transactions(texts: list[str]) -> list[VersionedTransaction] | BacktestError:
    """The transactions of a continue, or the error naming the first that does not decode."""
    out: list[VersionedTransaction] = []
    for index, text in enumerate(texts):
        try:
            out.append(decode_base64_transaction(text))
        except TransactionRejected as exc:
            return InvalidTransactionEncoding(index, str(exc))
    return out


def check_overrides(states: Mapping[str, AccountData]) -> BacktestError | None:
    """The first malformed account override (address, owner, base64 data); None if none."""
    for address, account in states.items():
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


def account_error(exc: AccountRejected) -> BacktestError:
    """The control-plane error for an account override the chain refused."""
    if exc.kind == "pubkey":
        return InvalidAccountPubkey(exc.address, exc.reason)
    if exc.kind == "owner":
        return InvalidAccountOwner(exc.address, exc.reason)
    return InvalidAccountEncoding(exc.address, "base64", exc.reason)
