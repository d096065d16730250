"""Standard Solana JSON shapes of what LiteSVM returns: accounts, errors, transactions.

The reference server answers RPC reads and reports executed transactions in the shapes a
Solana node uses (``getAccountInfo`` with ``encoding: base64``, ``getTransaction`` with
``encoding: json``), and account diffs in the control plane's ``AccountData`` shape.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
from typing import TYPE_CHECKING, cast

import orjson
from solders.message import MessageV0, MessageV1
from solders.transaction_status import TransactionStatus

from simtrio.server import chain

if TYPE_CHECKING:
    from collections.abc import Iterable

    from solders.account import Account
    from solders.transaction import VersionedTransaction
    from solders.transaction_metadata import InnerInstruction, TransactionMetadata
    from solders.transaction_status import TransactionErrorType

    from simtrio.wire.jsontext import JsonValue


def account_json(account: Account | None) -> JsonValue:
    """An account in the ``AccountData`` shape of the control plane (None stays None)."""
    if account is None:
        return None
    data = account.data
    return {
        "data": {"data": base64.b64encode(data).decode("ascii"), "encoding": "base64"},
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "space": len(data),
    }


def ui_account(account: Account) -> JsonValue:
    """An account as standard Solana RPC returns it with ``encoding: base64``."""
    data = account.data
    return {
        "data": [base64.b64encode(data).decode("ascii"), "base64"],
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": account.rent_epoch,
        "space": len(data),
    }


def error_json(err: TransactionErrorType | None) -> JsonValue:
    """A transaction error in Solana's JSON form, e.g. ``{"InstructionError":[0,{"Custom":1}]}``."""
    if err is None:
        return None
    status = TransactionStatus(0, None, None, err, None)
    parsed = cast("dict[str, JsonValue]", orjson.loads(status.to_json()))
    return parsed["err"]


def _instruction_json(
    program_id_index: int, accounts: bytes, data: bytes, stack_height: int | None
) -> JsonValue:
    return {
        "programIdIndex": program_id_index,
        "accounts": list(accounts),
        "data": chain.b58encode(data),
        "stackHeight": stack_height,
    }


def _inner_json(inner: Iterable[Iterable[InnerInstruction]]) -> list[JsonValue]:
    out: list[JsonValue] = []
    for index, group in enumerate(inner):
        items: list[JsonValue] = [
            _instruction_json(
                item.instruction().program_id_index,
                bytes(item.instruction().accounts),
                bytes(item.instruction().data),
                item.stack_height(),
            )
            for item in group
        ]
        if items:
            out.append({"index": index, "instructions": items})
    return out


def transaction_json(
    cfg: chain.ChainConfig,
    tx: VersionedTransaction,
    slot: int,
    err: JsonValue,
    meta: TransactionMetadata,
    logs: tuple[str, ...],
    balances: tuple[list[int], list[int]],
    names: list[str],
) -> JsonValue:
    message = tx.message
    header = message.header
    ui_message: dict[str, JsonValue] = {
        "accountKeys": names,
        "header": {
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
            "numRequiredSignatures": header.num_required_signatures,
        },
        "instructions": [
            _instruction_json(ix.program_id_index, bytes(ix.accounts), bytes(ix.data), None)
            for ix in message.instructions
        ],
        "recentBlockhash": str(message.recent_blockhash),
    }
    version: JsonValue = "legacy"
    if isinstance(message, MessageV1):
        version = 1
    elif isinstance(message, MessageV0):
        version = 0
        ui_message["addressTableLookups"] = [
            {
                "accountKey": str(lookup.account_key),
                "writableIndexes": list(bytes(lookup.writable_indexes)),
                "readonlyIndexes": list(bytes(lookup.readonly_indexes)),
            }
            for lookup in message.address_table_lookups
        ]
    status: JsonValue = {"Ok": None} if err is None else {"Err": err}
    return {
        "slot": slot,
        "blockTime": chain.block_time(cfg, slot),
        "transaction": {
            "signatures": [str(sig) for sig in tx.signatures],
            "message": ui_message,
        },
        "meta": {
            "err": err,
            "status": status,
            "fee": meta.fee(),
            "preBalances": balances[0],
            "postBalances": balances[1],
            "innerInstructions": _inner_json(meta.inner_instructions()),
            "logMessages": list(logs),
            "preTokenBalances": [],
            "postTokenBalances": [],
            "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []},
            "computeUnitsConsumed": meta.compute_units_consumed(),
        },
        "version": version,
    }
