"""The NDJSON run file written by ``simtrio run --output`` and read by ``simtrio compare``.

One JSON object per line, in this order:

* ``{"type": "metadata", ...create parameters, "url", "started_at", ...}`` (never the key);
* ``{"type": "transaction", "session_id", "slot", "signature", "success", "err", ...}`` and
  ``{"type": "accountDiff", "session_id", "slot", "account", "signature", "pre", "post"}``,
  one per distinct notification, in arrival order;
* ``{"type": "summary", "sessions": [...], "totals": {...}, ...}`` last.

A file whose run was cut short has no summary line; readers accept that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

import attrs
import orjson

from simtrio.cli.output import json_object

if TYPE_CHECKING:
    from pathlib import Path

    from simtrio.cli.report import TxFacts
    from simtrio.wire.rpc import AccountDiffNotification

__all__ = ["NdjsonWriter", "RunFile", "RunFileError", "read_run_file"]


class NdjsonWriter:
    """Appends records to a binary stream; each record is one line."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS) + b"\n")

    def metadata(self, **fields: Any) -> None:
        self.write({"type": "metadata", **fields})

    def transaction(self, session_id: str, slot: int, facts: TxFacts, payload: Any) -> None:
        meta = json_object((json_object(payload) or {}).get("meta"))
        record: dict[str, Any] = {
            "type": "transaction",
            "session_id": session_id,
            "slot": slot,
            "signature": facts.signature,
            "success": facts.success,
            "err": facts.err,
        }
        if meta is not None:
            for key, name in (("fee", "fee"), ("computeUnitsConsumed", "compute_units")):
                if key in meta:
                    record[name] = meta[key]
        self.write(record)

    def account_diff(self, session_id: str, notification: AccountDiffNotification) -> None:
        self.write(
            {
                "type": "accountDiff",
                "session_id": session_id,
                "slot": notification.slot,
                "account": notification.account,
                "signature": notification.signature,
                "pre": notification.pre,
                "post": notification.post,
            }
        )

    def summary(self, report: dict[str, Any]) -> None:
        self.write({**report, "type": "summary"})

    def flush(self) -> None:
        self._stream.flush()


class RunFileError(Exception):
    """A run file that cannot be read or is not NDJSON of the expected shape."""


@attrs.define
class RunFile:
    """A parsed run: transactions keyed by signature (the last record of each wins)."""

    source: str
    metadata: dict[str, Any] | None = None
    transactions: dict[str, dict[str, Any]] = attrs.field(factory=dict[str, dict[str, Any]])
    account_diffs: int = 0
    summary: dict[str, Any] | None = None


def read_run_file(path: Path) -> RunFile:
    """Parse a file written by ``--output``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    run = RunFile(source=str(path))
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise RunFileError(f"{path}:{number}: not a JSON line") from None
        obj = json_object(record)
        if obj is None:
            raise RunFileError(f"{path}:{number}: not a JSON object")
        match obj.get("type"):
            case "metadata":
                run.metadata = obj
            case "transaction":
                signature = obj.get("signature")
                if isinstance(signature, str):
                    run.transactions[signature] = obj
            case "accountDiff":
                run.account_diffs += 1
            case "summary":
                run.summary = obj
            case _:
                pass
    if run.metadata is None and run.summary is None and not run.transactions:
        raise RunFileError(f"{path}: no simtrio run records found")
    return run
