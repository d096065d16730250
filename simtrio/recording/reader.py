"""Reading run stores: listing, showing, verifying, decoding entries, loading replay scripts.

Plain blocking functions (each opens the store, which runs the recovery sweep, and closes it),
so the CLI can call them directly and trio code through ``trio.to_thread.run_sync``::

    for manifest in list_runs("runs.db"):
        print(manifest.run_id, manifest.status)
    print(format_runs_table(list_runs("runs.db")))      # simtrio runs list runs.db
    print(runs_to_json(list_runs("runs.db")))           # simtrio runs list runs.db --json
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, TypeAlias

import attrs
import orjson

from simtrio.errors import ProtocolError
from simtrio.recording.errors import RunUnusable, StoreError
from simtrio.recording.format import Plane, RunStatus, format_ns
from simtrio.recording.records import Entry, RunManifest, VerifyResult
from simtrio.recording.script import ReplayScript, build_script
from simtrio.recording.store import RunStore
from simtrio.wire import codec, rpc, types

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    from simtrio.wire.jsontext import JsonValue

StoreLike: TypeAlias = "str | os.PathLike[str] | RunStore"
"""A store path, or an open :class:`RunStore` (used as is and left open)."""


@attrs.frozen
class DecodedEntry:
    """An entry with its payload decoded into the wire object it was recorded from.

    ``value`` is a ``BacktestResponse`` (control; ``seq_id`` is the frame's ``seqId``), an
    ``RpcMessage`` (data), a ``BacktestRequest`` (sent) or the JSON object of a run marker.
    """

    entry: Entry
    value: object
    seq_id: int | None = None


def decode_entry(entry: Entry) -> DecodedEntry:
    """Decode one stored entry.

    Raises:
        StoreError: the payload is not what its plane says it is.
    """
    try:
        if entry.plane is Plane.CONTROL:
            seq_id, response = codec.decode_frame(entry.payload)
            return DecodedEntry(entry, response, seq_id)
        if entry.plane is Plane.DATA:
            return DecodedEntry(entry, rpc.decode_rpc(entry.payload))
        if entry.plane is Plane.SENT:
            request: types.BacktestRequest | types.UnknownRequest
            request = codec.decode_request(entry.payload)
            return DecodedEntry(entry, request)
        marker: JsonValue = orjson.loads(entry.payload)
        return DecodedEntry(entry, marker)
    except (ProtocolError, orjson.JSONDecodeError) as exc:
        raise StoreError(f"entry {entry.seq} ({entry.kind}) cannot be decoded: {exc}") from None


class _Opened:
    """Open a path (and close it after) or borrow an open store."""

    def __init__(self, store: StoreLike, *, create: bool = False) -> None:
        self._given = store if isinstance(store, RunStore) else None
        self._path = None if isinstance(store, RunStore) else store
        self._create = create
        self._store: RunStore | None = None

    def __enter__(self) -> RunStore:
        if self._given is not None:
            return self._given
        assert self._path is not None
        self._store = RunStore.open(self._path, create=self._create)
        return self._store

    def __exit__(self, *_: object) -> None:
        if self._store is not None:
            self._store.close()


def list_runs(store: StoreLike) -> list[RunManifest]:
    """Every run of the store, oldest first (after the recovery sweep).

    Raises:
        StoreError: no store there, or it cannot be read.
    """
    with _Opened(store) as opened:
        return opened.list_runs()


def get_run(store: StoreLike, run_id: str) -> RunManifest:
    """One run's manifest (``RunNotFound`` if there is none)."""
    with _Opened(store) as opened:
        return opened.get_run(run_id)


def read_entries(store: StoreLike, run_id: str) -> list[DecodedEntry]:
    """All entries of a run, decoded, in sequence order."""
    with _Opened(store) as opened:
        return [decode_entry(entry) for entry in opened.iter_entries(run_id)]


def verify_run(store: StoreLike, run_id: str, *, quarantine: bool = True) -> VerifyResult:
    """Verify a run's chain; a broken run is marked QUARANTINED unless ``quarantine=False``."""
    with _Opened(store) as opened:
        return opened.verify(run_id, quarantine=quarantine)


def load_replay_script(store: StoreLike, run_id: str) -> ReplayScript:
    """Verify a run and build its replay script.

    Raises:
        RunUnusable: the run is quarantined, still being recorded, or fails verification
            (it is quarantined then).
        RunNotFound: no such run.
        StoreError: the run cannot be replayed (no create, no handshake reply, bad entry).
    """
    with _Opened(store) as opened:
        manifest = opened.get_run(run_id)
        if manifest.status is RunStatus.QUARANTINED:
            raise RunUnusable(f"run {run_id} is quarantined ({manifest.problem})")
        if manifest.status is RunStatus.RUNNING:
            raise RunUnusable(f"run {run_id} is still being recorded")
        verdict = opened.verify(run_id)
        if not verdict.intact:
            raise RunUnusable(f"run {run_id} failed verification: {verdict.problem}")
        return build_script(opened.get_run(run_id), opened.iter_entries(run_id))


def runs_to_json(manifests: Iterable[RunManifest]) -> str:
    """``simtrio runs list --json``: a JSON list of objects (``run_id``, ``status``, ...)."""
    return orjson.dumps([m.to_json() for m in manifests], option=orjson.OPT_INDENT_2).decode()


_COLUMNS: tuple[str, ...] = ("RUN ID", "STATUS", "STARTED", "ENDED", "ENTRIES", "OUTCOME", "PARENT")


def format_runs_table(manifests: Iterable[RunManifest]) -> str:
    """``simtrio runs list``: one aligned row per run, with a header."""
    rows: list[tuple[str, ...]] = [_COLUMNS]
    for m in manifests:
        rows.append(
            (
                m.run_id,
                m.status.value,
                format_ns(m.started_at_ns) or "-",
                format_ns(m.ended_at_ns) or "-",
                str(m.entry_count),
                m.outcome or (m.problem and "broken") or "-",
                m.parent_run_id or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
