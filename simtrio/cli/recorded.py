"""Summaries of recorded runs, in the same shape as the NDJSON run file.

A recording holds what the client saw (the control frames as received, the notifications
delivered to the driver, the requests it wrote); replaying those entries through the same
tallies ``simtrio run`` uses gives a summary that ``runs show`` prints and ``compare`` can diff
against an NDJSON run. Frames a server sent again after a re-attach are recognised by their
sequence numbers and counted once, as the client did. Recordings made of driver events (older
``simtrio run --record`` files, or code calling ``record_event``) are read the same way.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Any

import orjson

from simtrio.cli.output import json_object
from simtrio.cli.report import RunReport, SessionState, SessionTally, tx_facts
from simtrio.cli.runfile import RunFile, RunFileError
from simtrio.cli.simfile import sim_transaction
from simtrio.errors import ProtocolError, SimtrioError
from simtrio.wire import codec, rpc, types

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from simtrio.recording.records import Entry, RunManifest


def _create_of(manifest: RunManifest) -> types.CreateBacktestSessionRequest | None:
    if manifest.create_request is None:
        return None
    try:
        request = codec.decode_request(manifest.create_request)
    except ProtocolError:
        return None
    return request if isinstance(request, types.CreateBacktestSessionRequest) else None


class _Summarizer:
    def __init__(self, manifest: RunManifest) -> None:
        create = _create_of(manifest)
        self.start = create.start_slot if create is not None else 0
        self.end = create.end_slot if create is not None else 0
        self.parallel = create.parallel if create is not None else False
        self.started_at = manifest.started_at_ns / 1e9
        self.tallies: dict[str, SessionTally] = {}
        self.cursors: dict[str, int] = {}
        self.listed: list[str] | None = None
        """The sub-sessions ``sessionsCreatedV2`` listed (a parallel run), in its order."""
        self.single: str | None = None
        """The session of a single-session run (frames may be recorded before its id is known)."""
        self.transactions: dict[str, dict[str, Any]] = {}
        self.account_diffs = 0
        self.seen_kinds: set[str] = set()
        self.ended_error: str | None = None

    def run_marker(self, entry: Entry) -> None:
        """``run.ended`` says how the recorded block was left (the exception type, if any)."""
        try:
            payload = json_object(orjson.loads(entry.payload)) or {}
        except orjson.JSONDecodeError:
            return
        error = payload.get("error")
        if isinstance(error, str):
            self.ended_error = error

    def _tally(
        self, session_id: str, at: float, start: int | None = None, end: int | None = None
    ) -> SessionTally:
        tally = self.tallies.get(session_id)
        if tally is None:
            tally = SessionTally(
                session_id,
                self.start if start is None else start,
                self.end if end is None else end,
                at,
            )
            self.tallies[session_id] = tally
        return tally

    def _fresh(self, session_id: str, seq: int | None) -> bool:
        """False for a numbered frame at or below the session's cursor (a re-sent duplicate)."""
        if seq is None:
            return True
        if seq <= self.cursors.get(session_id, -1):
            return False
        self.cursors[session_id] = seq
        return True

    def control(self, entry: Entry) -> None:
        at = entry.ts_ns / 1e9
        seq, response = codec.decode_frame(entry.payload)
        match response:
            case types.SessionsCreatedV2(session_ids=ids, start_slots=starts, end_slots=ends):
                if self.listed is None:
                    self.listed = list(ids)
                for index, session_id in enumerate(ids):
                    start = starts[index] if index < len(starts) else None
                    end = ends[index] if index < len(ends) else None
                    tally = self._tally(session_id, at, start, end)
                    # Its first events may come before this reply (as sent by the server).
                    tally.start_slot = self.start if start is None else start
                    tally.end_slot = self.end if end is None else end
                return
            case types.SessionCreated(session_id=session_id):
                if not self.parallel and self.single is None:
                    self.single = session_id
                    self._tally(session_id, at)
                return
            case types.SessionEventV2(session_id=session_id, seq_id=event_seq, event=event):
                if self._fresh(session_id, event_seq):
                    self._event(self._tally(session_id, at), event, at)
            case _:
                owner = entry.session_id if self.parallel else self.single or entry.session_id
                if owner is not None and self._fresh(owner, seq):
                    self._event(self._tally(owner, at), response, at)

    def sessions(self) -> list[SessionTally]:
        """The tallies, in ``sessionsCreatedV2`` order when the run has one."""
        if self.listed is None:
            return list(self.tallies.values())
        return [self.tallies[sid] for sid in self.listed if sid in self.tallies]

    def _event(self, tally: SessionTally, event: object, at: float) -> None:
        match event:
            case types.SlotNotification(slot=slot):
                tally.on_slot(slot)
            case types.Completed(summary=summary):
                tally.complete(summary, at)
            case types.Error(error=error):
                tally.on_error(str(error))
            case _:
                pass

    def data(self, entry: Entry) -> None:
        if entry.session_id is None:
            return
        tally = self._tally(entry.session_id, entry.ts_ns / 1e9)
        message = rpc.decode_rpc(entry.payload)
        if isinstance(message, rpc.TransactionNotification):
            self.seen_kinds.add("transactions")
            facts = tx_facts(message.transaction)
            if tally.on_transaction(facts) and facts.signature is not None:
                record = sim_transaction(message.slot, facts, message.transaction)
                record.setdefault("error", None)
                self.transactions[facts.signature] = record
        elif isinstance(message, rpc.AccountDiffNotification):
            self.seen_kinds.add("account-diffs")
            if tally.on_account_diff(message.account, message.signature, message.slot):
                self.account_diffs += 1


def summarize_recording(manifest: RunManifest, entries: Iterable[Entry], source: str) -> RunFile:
    """The run file equivalent of a recorded run (``source`` names it in messages)."""
    from simtrio.recording.format import RUN_ENDED, Plane

    summarizer = _Summarizer(manifest)
    for entry in entries:
        try:
            if entry.plane is Plane.CONTROL:
                summarizer.control(entry)
            elif entry.plane is Plane.DATA:
                summarizer.data(entry)
            elif entry.plane is Plane.RUN and entry.kind == RUN_ENDED:
                summarizer.run_marker(entry)
        except ProtocolError as exc:
            raise RunFileError(f"{source}: entry {entry.seq} is unreadable: {exc}") from None
    ended = manifest.ended_at_ns / 1e9 if manifest.ended_at_ns is not None else None
    report = RunReport(
        url=manifest.server_url or "",
        parallel=summarizer.parallel,
        start_slot=summarizer.start,
        end_slot=summarizer.end,
        started_at=summarizer.started_at,
        sessions=summarizer.sessions(),
        run_id=manifest.run_id,
        # A recording holds no subscribe requests: a kind with notifications was subscribed to,
        # one without is shown as not tracked (even if it was subscribed and stayed empty).
        subscriptions=tuple(sorted(summarizer.seen_kinds)),
    )
    error = summarizer.ended_error
    report.interrupted = manifest.outcome == "cancelled" or error == "RunInterrupted"
    if manifest.outcome == "error" and error not in ("RunFailed", "RunInterrupted"):
        report.error = f"the run ended with {error or 'an error'}"
    elif manifest.outcome == "crashed":
        report.error = "the recording process died before the run ended"
    now = ended if ended is not None else summarizer.started_at
    report.finished_at = now
    for tally in report.sessions:
        if tally.state is SessionState.RUNNING:
            if report.interrupted:
                tally.interrupt(now)
            else:
                tally.fail("the recording ends before the session completed", now)
    return RunFile(
        source=source,
        format="recording",
        metadata={"type": "metadata", **manifest.to_json()},
        transactions=summarizer.transactions,
        account_diffs=summarizer.account_diffs,
        summary=report.to_json(now),
    )


def load_recorded_run(db: Path, run_id: str) -> RunFile:
    """Summarise run ``run_id`` of the store ``db`` (for ``compare DB:RUN_ID``)."""
    source = f"{db}:{run_id}"
    try:
        from simtrio.recording.store import RunStore
    except ImportError:
        raise RunFileError(f"{source}: run recording is not available") from None
    try:
        with RunStore.open(db, create=False) as store:
            manifest = store.get_run(run_id)
            return summarize_recording(manifest, store.iter_entries(run_id), source)
    except SimtrioError as exc:
        raise RunFileError(str(exc)) from None
