"""simtrio's own NDJSON run file (``simtrio run --output FILE --format simtrio``).

The default output is the ``sim`` format (:mod:`simtrio.cli.simfile`); this richer one keeps
the session of every record. One JSON object per line, in this order:

* ``{"type": "metadata", ...create parameters, "url", "started_at", ...}`` (never the key);
* ``{"type": "transaction", "session_id", "slot", "signature", "success", "err", ...}`` and
  ``{"type": "accountDiff", "session_id", "slot", "account", "signature", "pre", "post"}``,
  one per distinct notification, in arrival order;
* ``{"type": "summary", "sessions": [...], "totals": {...}, ...}`` last.

A file whose run was cut short has no summary line; readers accept that. Reading every format
is :mod:`simtrio.cli.runfile`'s job.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import orjson

from simtrio.cli.output import json_object

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simtrio.cli.report import TxFacts
    from simtrio.events import ProgramLogs
    from simtrio.wire.rpc import AccountDiffNotification


class RunWriter(Protocol):
    """What ``simtrio run`` feeds an output file with, whatever its format."""

    def metadata(self, fields: Mapping[str, Any]) -> None: ...

    def session_started(self, session_id: str, start_slot: int, end_slot: int) -> None: ...

    def transaction(self, session_id: str, slot: int, facts: TxFacts, payload: Any) -> None: ...

    def account_diff(self, session_id: str, notification: AccountDiffNotification) -> None: ...

    def program_logs(self, session_id: str, event: ProgramLogs) -> None: ...

    def summary(self, report: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...


class NdjsonWriter:
    """Appends records to a binary stream; each record is one line."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS) + b"\n")

    def metadata(self, fields: Mapping[str, Any]) -> None:
        self.write({"type": "metadata", **fields})

    def session_started(self, session_id: str, start_slot: int, end_slot: int) -> None:
        """Not a record of this format: the summary lists every session."""

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

    def program_logs(self, session_id: str, event: ProgramLogs) -> None:
        self.write(
            {
                "type": "logs",
                "session_id": session_id,
                "slot": event.slot,
                "signature": event.signature,
                "program_id": event.program_id,
                "err": event.err,
                "logs": list(event.logs),
            }
        )

    def summary(self, report: Mapping[str, Any]) -> None:
        self.write({**report, "type": "summary"})

    def flush(self) -> None:
        self._stream.flush()
