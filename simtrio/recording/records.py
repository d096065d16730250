"""The run store's values: a run's manifest, its entries, and what checking or recovering a run found.

Plain data (attrs, frozen where they are values): the store reads and writes them, the recorder
hands :class:`PendingEntry` batches to it, readers and exports get :class:`Entry` back.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING

import attrs
import orjson

from simtrio.recording.format import Plane, RunStatus, entry_hash, format_ns, json_field
from simtrio.recording.runlock import RunLock

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue


@attrs.frozen
class RunManifest:
    """What a run is: identity, lineage, status, parameters and counters."""

    run_id: str
    parent_run_id: str | None
    status: RunStatus
    create_request: str | None
    """The canonical ``createBacktestSession`` text the run was created with."""
    server_url: str | None
    """Without user info or query string: never a credential."""
    simtrio_version: str
    started_at_ns: int
    ended_at_ns: int | None
    entry_count: int
    control_count: int
    data_count: int
    sent_count: int
    head_hash: bytes = attrs.field(repr=False)
    outcome: str | None
    """``completed``, ``error:<ExceptionType>``, ``cancelled`` or ``crashed``."""
    problem: str | None
    """Why a run was quarantined (or stopped, for a run whose writer failed)."""
    malformed: bool = attrs.field(default=False, repr=False)
    """The stored manifest row itself is damaged; the run is shown as ``QUARANTINED``."""

    @property
    def create_params(self) -> JsonValue:
        """The create request's ``params`` object, or None."""
        if self.create_request is None:
            return None
        try:
            request: JsonValue = orjson.loads(self.create_request)
        except orjson.JSONDecodeError:
            return None
        return json_field(request, "params")

    def columns(self) -> tuple[object, ...]:
        """The manifest's values in the order of the store's ``runs`` columns."""
        return (
            self.run_id,
            self.parent_run_id,
            self.status.value,
            self.create_request,
            self.server_url,
            self.simtrio_version,
            self.started_at_ns,
            self.ended_at_ns,
            self.entry_count,
            self.control_count,
            self.data_count,
            self.sent_count,
            self.head_hash,
            self.outcome,
            self.problem,
        )

    def to_json(self) -> dict[str, JsonValue]:
        """A JSON-ready view (used by ``simtrio runs list --json``)."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "parent_run_id": self.parent_run_id,
            "started_at": format_ns(self.started_at_ns),
            "ended_at": format_ns(self.ended_at_ns),
            "server_url": self.server_url,
            "simtrio_version": self.simtrio_version,
            "create_params": self.create_params,
            "entries": self.entry_count,
            "control_entries": self.control_count,
            "data_entries": self.data_count,
            "sent_entries": self.sent_count,
            "outcome": self.outcome,
            "problem": self.problem,
            "head_hash": self.head_hash.hex(),
        }


@attrs.frozen
class PendingEntry:
    """An entry handed to :meth:`RunStore.append`; ``payload`` is the uncompressed wire text."""

    seq: int
    ts_ns: int
    plane: Plane
    kind: str
    session_id: str | None
    topic: str | None
    payload: bytes = attrs.field(repr=False)

    def head(self) -> tuple[int, int, str, str, str | None, str | None]:
        """``(seq, ts_ns, plane, kind, session_id, topic)``: the columns before the payload."""
        return (self.seq, self.ts_ns, self.plane.value, self.kind, self.session_id, self.topic)


@attrs.frozen
class Entry(PendingEntry):
    """A stored entry as read back (payload decompressed), with its chained hash."""

    hash: bytes = attrs.field(repr=False)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@attrs.frozen
class VerifyResult:
    """Outcome of checking one run's chain, sequence and manifest."""

    run_id: str
    intact: bool
    entries: int
    """Entries checked before the first problem (all of them when intact)."""
    ended: bool
    """The last entry is ``run.ended``."""
    problem: str | None = None
    bad_seq: int | None = None


@attrs.frozen
class RecoveryResult:
    """What the recovery sweep did with one run left ``RUNNING``."""

    run_id: str
    status: RunStatus
    entries: int
    problem: str | None = None


@attrs.define
class ActiveRun:
    """Writer-side state of a run being recorded (owned by exactly one writer)."""

    run_id: str
    next_seq: int
    head_hash: bytes
    _lock: RunLock | None = attrs.field(repr=False)
    control_count: int = 0
    data_count: int = 0
    sent_count: int = 0
    ended: bool = False


def chain_hash(previous: bytes, entry: PendingEntry | Entry) -> bytes:
    """The hash that chains ``entry`` onto the entry hashed ``previous``."""
    return entry_hash(
        previous,
        seq=entry.seq,
        ts_ns=entry.ts_ns,
        plane=entry.plane.value,
        kind=entry.kind,
        session_id=entry.session_id,
        topic=entry.topic,
        payload=entry.payload,
    )
