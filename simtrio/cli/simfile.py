"""The ``sim`` NDJSON run file: what the Rust ``sim`` command line writes, and simtrio's default.

One adjacently tagged object per line, ``{"type": <snake_case>, "data": {...}}``:

* ``metadata`` first: ``start_slot``, ``end_slot`` (inclusive), ``program_ids`` and
  ``program_so`` (omitted when empty), ``ran_at_unix_secs``;
* ``session_started`` as each (sub-)session starts;
* ``tx`` and ``diff`` in arrival order;
* ``summary`` last: ``total``, ``successes``, ``failures``, ``session_ids`` and simtrio's own
  summary keys (a reader that ignores unknown keys is not disturbed by them).

A ``tx`` carries the transaction's outcome, its logs and its balance changes, computed from the
``getTransaction``-shaped notification: SOL changes from ``meta.preBalances`` /
``meta.postBalances`` against the account keys (loaded addresses included), token changes from
``meta.preTokenBalances`` / ``meta.postTokenBalances``. Only accounts whose balance moved are
listed.
"""

from __future__ import annotations

__all__: list[str] = []

import time
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from simtrio.cli.output import json_object

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from simtrio.cli.report import TxFacts
    from simtrio.events import ProgramLogs
    from simtrio.wire.jsontext import JsonValue
    from simtrio.wire.rpc import AccountDiffNotification


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []  # pyright: ignore[reportUnknownVariableType]


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def account_keys(payload: Mapping[str, Any]) -> list[str | None]:
    """The transaction's account keys in index order: static keys, then loaded addresses."""
    message = (json_object(payload.get("transaction")) or {}).get("message")
    keys: list[str | None] = []
    for key in _list((json_object(message) or {}).get("accountKeys")):
        if isinstance(key, str):
            keys.append(key)
        else:  # jsonParsed: {"pubkey": ..., "signer": ..., "writable": ...}
            pubkey = (json_object(key) or {}).get("pubkey")
            keys.append(pubkey if isinstance(pubkey, str) else None)
    loaded = json_object((json_object(payload.get("meta")) or {}).get("loadedAddresses")) or {}
    for part in ("writable", "readonly"):
        keys.extend(k if isinstance(k, str) else None for k in _list(loaded.get(part)))
    return keys


def error_text(err: JsonValue) -> str:
    """A transaction error as one string (compact JSON unless it is a string already)."""
    if isinstance(err, str):
        return err
    return orjson.dumps(err).decode()


def _sol_changes(payload: Mapping[str, Any], keys: Sequence[str | None]) -> list[dict[str, Any]]:
    meta = json_object(payload.get("meta")) or {}
    pre, post = _list(meta.get("preBalances")), _list(meta.get("postBalances"))
    changes: list[dict[str, Any]] = []
    for index, key in enumerate(keys):
        if key is None or index >= len(pre) or index >= len(post):
            continue
        before, after = _int(pre[index]), _int(post[index])
        if before is None or after is None or before == after:
            continue
        changes.append({"account": key, "pre": before, "post": after, "change": after - before})
    return changes


def _token_entries(
    value: object, keys: Sequence[str | None]
) -> dict[tuple[str, str], tuple[int, int | None, str | None]]:
    """``(account, mint) -> (amount, decimals, owner)`` from a token balance list."""
    out: dict[tuple[str, str], tuple[int, int | None, str | None]] = {}
    for item in _list(value):
        entry = json_object(item) or {}
        index, mint = _int(entry.get("accountIndex")), entry.get("mint")
        if index is None or not isinstance(mint, str) or not 0 <= index < len(keys):
            continue
        account = keys[index]
        if account is None:
            continue
        amount_info = json_object(entry.get("uiTokenAmount")) or {}
        amount = _int(amount_info.get("amount"))
        decimals = _int(amount_info.get("decimals"))
        owner = entry.get("owner")
        out[(account, mint)] = (
            amount or 0,
            decimals,
            owner if isinstance(owner, str) else None,
        )
    return out


def _token_changes(payload: Mapping[str, Any], keys: Sequence[str | None]) -> list[dict[str, Any]]:
    meta = json_object(payload.get("meta")) or {}
    pre = _token_entries(meta.get("preTokenBalances"), keys)
    post = _token_entries(meta.get("postTokenBalances"), keys)
    changes: list[dict[str, Any]] = []
    for account, mint in dict.fromkeys([*pre, *post]):
        before, b_decimals, b_owner = pre.get((account, mint), (0, None, None))
        after, a_decimals, a_owner = post.get((account, mint), (0, None, None))
        if before == after:
            continue
        change: dict[str, Any] = {"account": account, "mint": mint}
        owner = a_owner or b_owner
        if owner is not None:
            change["owner"] = owner
        decimals = a_decimals if a_decimals is not None else b_decimals
        change.update(pre=before, post=after, change=after - before, decimals=decimals or 0)
        changes.append(change)
    return changes


def sim_transaction(slot: int, facts: TxFacts, payload: JsonValue) -> dict[str, Any]:
    """The ``data`` of a ``tx`` record for one transaction notification."""
    body = json_object(payload) or {}
    if "value" in body and "transaction" not in body:
        body = json_object(body["value"]) or {}
    meta = json_object(body.get("meta")) or {}
    keys = account_keys(body)
    record: dict[str, Any] = {"slot": slot}
    block_time = _int(body.get("blockTime"))
    if block_time is not None:
        record["timestamp"] = block_time
    record["signature"] = facts.signature
    record["success"] = facts.success
    if not facts.success:
        record["error"] = error_text(facts.err)
    record["logs"] = [line for line in _list(meta.get("logMessages")) if isinstance(line, str)]
    record["sol_changes"] = _sol_changes(body, keys)
    record["token_changes"] = _token_changes(body, keys)
    return record


def sim_diff(notification: AccountDiffNotification) -> dict[str, Any]:
    """The ``data`` of a ``diff`` record."""
    record: dict[str, Any] = {"slot": notification.slot, "account": notification.account}
    if notification.signature is not None:
        record["signature"] = notification.signature
    record["pre_state"] = notification.pre
    record["post_state"] = notification.post
    return record


class SimWriter:
    """Writes the ``sim`` NDJSON records to a binary stream, one per line."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def _write(self, kind: str, data: Mapping[str, Any]) -> None:
        line = orjson.dumps({"type": kind, "data": data}, option=orjson.OPT_NON_STR_KEYS)
        self._stream.write(line + b"\n")

    def metadata(self, fields: Mapping[str, Any]) -> None:
        data: dict[str, Any] = {"start_slot": fields["start_slot"], "end_slot": fields["end_slot"]}
        if fields.get("program_ids"):
            data["program_ids"] = list(fields["program_ids"])
        if fields.get("program_so"):
            data["program_so"] = list(fields["program_so"])
        data["ran_at_unix_secs"] = int(time.time())
        self._write("metadata", data)

    def session_started(self, session_id: str, start_slot: int, end_slot: int) -> None:
        self._write(
            "session_started",
            {"session_id": session_id, "start_slot": start_slot, "end_slot": end_slot},
        )

    def transaction(self, session_id: str, slot: int, facts: TxFacts, payload: Any) -> None:
        self._write("tx", sim_transaction(slot, facts, payload))

    def account_diff(self, session_id: str, notification: AccountDiffNotification) -> None:
        self._write("diff", sim_diff(notification))

    def program_logs(self, session_id: str, event: ProgramLogs) -> None:
        """Not a record of this format: ``tx`` records carry their logs already."""

    def summary(self, report: Mapping[str, Any]) -> None:
        totals = json_object(report.get("totals")) or {}
        sessions = [json_object(s) or {} for s in _list(report.get("sessions"))]
        total = totals.get("transactions")
        failures = totals.get("failed_transactions")
        data: dict[str, Any] = {
            "total": total if isinstance(total, int) else 0,
            "successes": total - failures
            if isinstance(total, int) and isinstance(failures, int)
            else 0,
            "failures": failures if isinstance(failures, int) else 0,
            "session_ids": [s.get("session_id") for s in sessions],
        }
        for key, value in report.items():
            if key not in data and key != "type":
                data[key] = value
        self._write("summary", data)

    def flush(self) -> None:
        self._stream.flush()
