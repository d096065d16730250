"""Reading runs, whatever wrote them: ``compare``, ``summarize`` and friends start here.

Accepted, told apart by their content (never by the file name):

* ``sim`` NDJSON: ``{"type": ..., "data": {...}}`` lines (:mod:`simtrio.cli.simfile`), with a
  ``metadata`` record;
* the legacy single document ``{"metadata": {...}, "transactions": [...], "summary": {...}}``
  (pretty-printed or not);
* simtrio's own NDJSON (``--format simtrio``: ``{"type": "metadata", ...}`` lines);
* a recording, named ``DB:RUN_ID``.

Unreadable input is a :class:`RunFileError` naming the file and the line: a file that is empty,
whose records are all unknown, that lacks the metadata record its format needs, or whose last
line was cut off mid-record. It is never read as an empty run. Unknown *extra* record types in a
recognised file are skipped and counted (``RunFile.skipped``).

Every transaction is normalised to the ``sim`` ``tx`` shape: ``slot``, ``signature``,
``success``, ``error`` (a string or None), ``logs``, ``sol_changes``, ``token_changes``.
"""

from __future__ import annotations

__all__: list[str] = []

from pathlib import Path
from typing import Any, Final, cast

import attrs
import orjson

from simtrio.cli.output import json_object
from simtrio.cli.simfile import error_text

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SIM_KINDS = frozenset({"metadata", "session_started", "tx", "diff", "summary"})
_SIMTRIO_KINDS = frozenset({"metadata", "transaction", "accountDiff", "summary"})


class RunFileError(Exception):
    """A run that cannot be read: its message is one line naming the file (and line)."""


@attrs.define
class RunFile:
    """A run, read from any accepted format."""

    source: str
    format: str = "sim"
    """``sim``, ``sim-legacy``, ``simtrio`` or ``recording``."""
    metadata: dict[str, Any] | None = None
    transactions: dict[str, dict[str, Any]] = attrs.field(factory=dict[str, dict[str, Any]])
    """Normalised ``tx`` records by signature (the last record of a signature wins)."""
    account_diffs: int = 0
    summary: dict[str, Any] | None = None
    """simtrio's run summary (``sessions``, ``totals``, ...) when the file carries one."""
    sim_summary: dict[str, Any] | None = None
    """The ``sim`` summary (``total``, ``successes``, ``failures``, ``session_ids``), if any."""
    session_ids: list[str] = attrs.field(factory=list[str])
    skipped: int = 0
    """Records of unknown types that were skipped."""

    @property
    def finished(self) -> bool:
        """The file has its closing summary (a run cut short has none)."""
        return self.summary is not None or self.sim_summary is not None

    def totals(self) -> dict[str, int | None]:
        """``total``, ``successes``, ``failures``: from the summary, else from the records."""
        if self.sim_summary is not None:
            values = {k: self.sim_summary.get(k) for k in ("total", "successes", "failures")}
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values.values()):
                return values
        failures = sum(1 for tx in self.transactions.values() if not tx["success"])
        total = len(self.transactions)
        return {"total": total, "successes": total - failures, "failures": failures}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _changes(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    items = cast("list[object]", value)
    return [c for c in (json_object(v) for v in items) if c is not None]


def tx_record(data: dict[str, Any]) -> dict[str, Any] | None:
    """A ``tx`` (or simtrio ``transaction``) record normalised; None without a signature."""
    signature = data.get("signature")
    if not isinstance(signature, str):
        return None
    success = bool(data.get("success"))
    error = data.get("error", data.get("err"))
    logs = data.get("logs")
    return {
        "slot": _int(data.get("slot")),
        "signature": signature,
        "success": success,
        "error": None if success or error is None else error_text(error),
        "logs": [line for line in logs if isinstance(line, str)] if isinstance(logs, list) else [],  # pyright: ignore[reportUnknownVariableType]
        "sol_changes": _changes(data.get("sol_changes")),
        "token_changes": _changes(data.get("token_changes")),
    }


def read_run_file(path: Path) -> RunFile:
    """Read a run file of any accepted format (see the module's docstring)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw.startswith(_SQLITE_MAGIC):
        raise RunFileError(f"{path}: a run store, not a run file; name a run as {path}:RUN_ID")
    if not raw.strip():
        raise RunFileError(f"{path}: empty file, not a run")
    if raw.lstrip().startswith(b"{"):
        try:
            whole = orjson.loads(raw)
        except orjson.JSONDecodeError:
            whole = None
        document = json_object(whole)
        if document is not None and "type" not in document:
            return _read_legacy(path, document)
    return _read_lines(path, raw)


def _read_legacy(path: Path, document: dict[str, Any]) -> RunFile:
    metadata = json_object(document.get("metadata"))
    transactions = document.get("transactions")
    if metadata is None or not isinstance(transactions, list):
        raise RunFileError(
            f"{path}: a JSON document, but not a run "
            "(expected 'metadata' and 'transactions', or one record per line)"
        )
    run = RunFile(source=str(path), format="sim-legacy", metadata=metadata)
    for index, item in enumerate(cast("list[object]", transactions)):
        record = tx_record(json_object(item) or {})
        if record is None:
            raise RunFileError(f"{path}: transactions[{index}] is not a transaction")
        run.transactions[record["signature"]] = record
    summary = json_object(document.get("summary"))
    if summary is not None:
        run.sim_summary = summary
    ids = metadata.get("session_ids")
    if isinstance(ids, list):
        run.session_ids = [i for i in ids if isinstance(i, str)]  # pyright: ignore[reportUnknownVariableType]
    return run


def _read_lines(path: Path, raw: bytes) -> RunFile:
    lines = raw.split(b"\n")
    complete_end = raw.endswith(b"\n")
    run = RunFile(source=str(path))
    fmt: str | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = number == len(lines) and not complete_end
        try:
            obj = json_object(orjson.loads(line))
        except orjson.JSONDecodeError:
            if last:
                raise RunFileError(
                    f"{path}:{number}: truncated: the last line is cut off"
                ) from None
            raise RunFileError(f"{path}:{number}: not a JSON line") from None
        if obj is None:
            raise RunFileError(f"{path}:{number}: not a JSON object")
        kind = obj.get("type")
        data = json_object(obj.get("data"))
        if fmt is None:
            if data is not None and kind in _SIM_KINDS:
                fmt = "sim"
            elif data is None and kind in _SIMTRIO_KINDS:
                fmt = "simtrio"
            else:
                run.skipped += 1
                continue
            if kind != "metadata":
                raise RunFileError(
                    f"{path}:{number}: no metadata record before the first {kind!r} record"
                )
        if fmt == "sim":
            _sim_record(run, kind, data)
        else:
            _simtrio_record(run, kind, obj)
    if fmt is None:
        raise RunFileError(f"{path}: no run records (neither sim nor simtrio format)")
    run.format = fmt
    return run


def _sim_record(run: RunFile, kind: object, data: dict[str, Any] | None) -> None:
    if data is None:
        run.skipped += 1
        return
    match kind:
        case "session_started":
            session_id = data.get("session_id")
            if isinstance(session_id, str):
                run.session_ids.append(session_id)
        case "summary":
            run.sim_summary = data
            sessions, totals = data.get("sessions"), data.get("totals")
            if isinstance(sessions, list) and isinstance(totals, dict):
                run.summary = data
        case _:
            _shared_record(run, kind, data)


_SIMTRIO_AS_SIM: Final = {"metadata": "metadata", "transaction": "tx", "accountDiff": "diff"}
"""simtrio's spelling of the record kinds both formats have, to sim's."""


def _simtrio_record(run: RunFile, kind: object, obj: dict[str, Any]) -> None:
    if kind == "summary":
        run.summary = obj
    else:
        _shared_record(run, _SIMTRIO_AS_SIM.get(kind) if isinstance(kind, str) else None, obj)


def _shared_record(run: RunFile, kind: object, data: dict[str, Any]) -> None:
    """A record both formats have, by its sim kind; anything else is skipped."""
    match kind:
        case "metadata":
            run.metadata = data
        case "tx":
            record = tx_record(data)
            if record is not None:
                run.transactions[record["signature"]] = record
        case "diff":
            run.account_diffs += 1
        case _:
            run.skipped += 1


def load_run(reference: str) -> RunFile:
    """A run file, or ``DB:RUN_ID`` naming a recorded run."""
    path = Path(reference)
    if not path.exists() and ":" in reference:
        db, _, run_id = reference.rpartition(":")
        if db and run_id and Path(db).exists():
            from simtrio.cli.recorded import load_recorded_run

            return load_recorded_run(Path(db), run_id)
    if not path.exists():
        raise RunFileError(f"{reference}: no such file (nor a DB:RUN_ID recording)")
    return read_run_file(path)
