"""Moving one finished run between stores: export it to bytes, import it with its chain checked.

An export is one zstd frame of JSON lines: a header (format, version, the run's manifest and
free-form labels) and then one line per entry, each with its chained hash. Nothing is trusted
on import: the chain is recomputed from the run id's genesis hash over every entry, the sequence
must have no gap, the first entry must be ``run.started``, an ENDED run must end with
``run.ended``, and the entry count, plane counters and head hash must match the manifest. A run
that fails any of this is *quarantined*: its bytes are kept in ``<store>.quarantine/`` for
inspection and nothing of it reaches the store.

Plain blocking code with no trio import, like the store itself.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

import attrs
import orjson
import zstandard

from simtrio.recording.boundary import store_errors
from simtrio.recording.errors import RunNotFound, RunUnusable, StoreError
from simtrio.recording.format import (
    PLANE_VALUES,
    RUN_ENDED,
    RUN_STARTED,
    ZSTD_LEVEL,
    Plane,
    RunStatus,
    genesis_hash,
)
from simtrio.recording.records import Entry, RunManifest, chain_hash
from simtrio.wire.jsontext import JsonValue

if TYPE_CHECKING:
    from simtrio.recording.store import RunStore

EXPORT_FORMAT: Final = "simtrio-run"
EXPORT_VERSION: Final = 1
MAX_EXPORT_SIZE: Final = 1024 * 1024 * 1024
"""An export claiming to inflate beyond this is refused."""

_RUN_ID: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:-]{0,127}")
_FINISHED: Final = (RunStatus.ENDED, RunStatus.CRASHED_RECOVERED)


def _no_labels() -> dict[str, JsonValue]:
    return {}


@attrs.frozen
class RunExport:
    """A parsed export: the manifest, the entries and the labels, not yet verified."""

    manifest: RunManifest
    entries: tuple[Entry, ...] = attrs.field(repr=False)
    labels: Mapping[str, JsonValue] = attrs.field(factory=_no_labels)


@attrs.frozen
class ImportResult:
    """What :func:`import_run` did with one export."""

    run_id: str | None
    """The run's id (None when the export could not even be parsed)."""
    imported: bool
    """The run is now in the store (False when it was there already, or quarantined)."""
    already_present: bool = False
    """The identical run (same head hash) was in the store before: nothing was written."""
    quarantined: Path | None = None
    """Where the refused export was kept, when it failed verification."""
    problem: str | None = None
    """Why it was quarantined."""
    labels: Mapping[str, JsonValue] = attrs.field(factory=_no_labels)

    @property
    def ok(self) -> bool:
        """The run is in the store, intact."""
        return self.quarantined is None


class _Invalid(Exception):
    """One verification problem (internal: it becomes a quarantine)."""


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export_run(
    store: RunStore, run_id: str, *, labels: Mapping[str, JsonValue] | None = None
) -> bytes:
    """The run as one self-contained, compressed blob (see the module docstring).

    Only a finished run whose chain is intact can be exported.

    Raises:
        RunNotFound: no such run.
        RunUnusable: the run is still recording, quarantined, or fails verification.
    """
    manifest = store.get_run(run_id)
    if manifest.status not in _FINISHED:
        raise RunUnusable(f"run {run_id} is {manifest.status.value}; only finished runs export")
    verdict = store.verify(run_id)
    if not verdict.intact:
        raise RunUnusable(f"run {run_id} failed verification: {verdict.problem}")
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "manifest": _manifest_json(manifest),
        "labels": dict(labels or {}),
    }
    lines = [orjson.dumps(header)]
    for e in store.iter_entries(run_id):
        row = [*e.head(), base64.b64encode(e.payload).decode("ascii"), e.hash.hex()]
        lines.append(orjson.dumps(row))
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(b"\n".join(lines) + b"\n")


def _manifest_json(m: RunManifest) -> dict[str, JsonValue]:
    return {
        "run_id": m.run_id,
        "parent_run_id": m.parent_run_id,
        "status": m.status.value,
        "create_request": m.create_request,
        "server_url": m.server_url,
        "simtrio_version": m.simtrio_version,
        "started_at_ns": m.started_at_ns,
        "ended_at_ns": m.ended_at_ns,
        "entry_count": m.entry_count,
        "control_count": m.control_count,
        "data_count": m.data_count,
        "sent_count": m.sent_count,
        "head_hash": m.head_hash.hex(),
        "outcome": m.outcome,
        "problem": m.problem,
    }


# --------------------------------------------------------------------------------------------
# Parsing and verification (pure)
# --------------------------------------------------------------------------------------------


def _inflate(data: bytes) -> bytes:
    try:
        if zstandard.frame_content_size(data) > MAX_EXPORT_SIZE:
            raise _Invalid("the export claims an implausible size")
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_EXPORT_SIZE)
    except zstandard.ZstdError as exc:
        raise _Invalid(f"not a run export ({exc})") from None


def _int(obj: Mapping[str, object], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f"manifest field {key!r} is missing or not an integer")
    return value


def _opt_int(obj: Mapping[str, object], key: str) -> int | None:
    return None if obj.get(key) is None else _int(obj, key)


def _str(obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _Invalid(f"manifest field {key!r} is missing or not a string")
    return value


def _opt_str(obj: Mapping[str, object], key: str) -> str | None:
    return None if obj.get(key) is None else _str(obj, key)


def _parse_manifest(raw: object) -> RunManifest:
    if not isinstance(raw, dict):
        raise _Invalid("the export has no manifest")
    obj = cast("dict[str, object]", raw)
    run_id = _str(obj, "run_id")
    if not _RUN_ID.fullmatch(run_id):
        raise _Invalid("the run id is malformed")
    try:
        status = RunStatus(_str(obj, "status"))
        head = bytes.fromhex(_str(obj, "head_hash"))
    except ValueError as exc:
        raise _Invalid(f"bad manifest: {exc}") from None
    return RunManifest(
        run_id=run_id,
        parent_run_id=_opt_str(obj, "parent_run_id"),
        status=status,
        create_request=_opt_str(obj, "create_request"),
        server_url=_opt_str(obj, "server_url"),
        simtrio_version=_str(obj, "simtrio_version"),
        started_at_ns=_int(obj, "started_at_ns"),
        ended_at_ns=_opt_int(obj, "ended_at_ns"),
        entry_count=_int(obj, "entry_count"),
        control_count=_int(obj, "control_count"),
        data_count=_int(obj, "data_count"),
        sent_count=_int(obj, "sent_count"),
        head_hash=head,
        outcome=_opt_str(obj, "outcome"),
        problem=_opt_str(obj, "problem"),
    )


def _parse_entry(line: bytes) -> Entry:
    try:
        row: object = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise _Invalid("an entry line is not JSON") from None
    if not isinstance(row, list) or len(cast("list[object]", row)) != 8:
        raise _Invalid("an entry line has the wrong shape")
    seq, ts_ns, plane, kind, session_id, topic, payload, digest = cast("list[object]", row)
    if not (
        isinstance(seq, int)
        and isinstance(ts_ns, int)
        and isinstance(plane, str)
        and plane in PLANE_VALUES
        and isinstance(kind, str)
        and (session_id is None or isinstance(session_id, str))
        and (topic is None or isinstance(topic, str))
        and isinstance(payload, str)
        and isinstance(digest, str)
    ):
        raise _Invalid("an entry line has a field of the wrong type")
    try:
        body = base64.b64decode(payload, validate=True)
        hash_ = bytes.fromhex(digest)
    except (binascii.Error, ValueError):
        raise _Invalid(f"entry {seq} is not decodable") from None
    return Entry(seq, ts_ns, Plane(plane), kind, session_id, topic, body, hash_)


@contextmanager
def _refused_as_store_error() -> Generator[None]:
    """What the parse and the check refuse reaches a caller as a ``StoreError``."""
    try:
        yield
    except _Invalid as exc:
        raise StoreError(str(exc)) from None


def parse_export(data: bytes) -> RunExport:
    """Parse an export without verifying it.

    Raises:
        StoreError: the bytes are not a run export this simtrio can read.
    """
    with _refused_as_store_error():
        return _parse(data)


def _parse(data: bytes) -> RunExport:
    lines = _inflate(data).split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise _Invalid("the export is empty")
    try:
        header: object = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        raise _Invalid("the export header is not JSON") from None
    if not isinstance(header, dict):
        raise _Invalid("the export header is not an object")
    head = cast("dict[str, object]", header)
    if head.get("format") != EXPORT_FORMAT:
        raise _Invalid("not a simtrio run export")
    if head.get("version") != EXPORT_VERSION:
        raise _Invalid(f"export version {head.get('version')!r} is not supported")
    labels: object = head.get("labels")
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise _Invalid("the export's labels are not an object")
    manifest = _parse_manifest(head.get("manifest"))
    entries = tuple(_parse_entry(line) for line in lines[1:])
    return RunExport(manifest, entries, cast("dict[str, JsonValue]", labels))


def check_export(export: RunExport) -> None:
    """Recompute the chain and hold it against the manifest.

    Raises:
        StoreError: the run is not intact (the message says where).
    """
    with _refused_as_store_error():
        _check(export)


def _check(export: RunExport) -> None:
    m = export.manifest
    if m.status not in _FINISHED:
        raise _Invalid(f"the run is {m.status.value}, not finished")
    head = genesis_hash(m.run_id)
    counts = {Plane.CONTROL: 0, Plane.DATA: 0, Plane.SENT: 0}
    ended = False
    for expected, e in enumerate(export.entries, start=1):
        if e.seq != expected:
            raise _Invalid(f"entry {expected} is missing (next is {e.seq})")
        if ended:
            raise _Invalid(f"entry {e.seq} follows run.ended")
        head = chain_hash(head, e)
        if head != e.hash:
            raise _Invalid(f"entry {e.seq} does not match its hash (modified)")
        if e.seq == 1 and (e.plane is not Plane.RUN or e.kind != RUN_STARTED):
            raise _Invalid("the first entry is not run.started")
        if e.plane in counts:
            counts[e.plane] += 1
        ended = e.plane is Plane.RUN and e.kind == RUN_ENDED
    count = len(export.entries)
    if count == 0:
        raise _Invalid("the run has no entries")
    if count != m.entry_count or head != m.head_hash:
        raise _Invalid(
            f"the run has {count} entries but its manifest records {m.entry_count} "
            "(entries removed or added)"
        )
    if (counts[Plane.CONTROL], counts[Plane.DATA], counts[Plane.SENT]) != (
        m.control_count,
        m.data_count,
        m.sent_count,
    ):
        raise _Invalid("the manifest's counters do not match the entries")
    if (m.status is RunStatus.ENDED) != ended:
        raise _Invalid(f"a {m.status.value} run {'lacks' if not ended else 'has'} run.ended")


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


def quarantine_dir(store: RunStore) -> Path:
    """Where refused exports of ``store`` are kept."""
    return store.path.with_name(store.path.name + ".quarantine")


def _quarantine(store: RunStore, data: bytes, run_id: str | None, problem: str) -> Path:
    folder = quarantine_dir(store)
    digest = hashlib.sha256(data).hexdigest()[:16]
    stem = f"{run_id}-{digest}" if run_id is not None else digest
    target = folder / f"{stem}.simrun"
    with store_errors("cannot quarantine a refused export"):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        target.with_suffix(".problem").write_text(problem + "\n", encoding="utf-8")
    return target


def import_run(store: RunStore, data: bytes) -> ImportResult:
    """Verify an export and add its run to ``store``; quarantine it when it is not intact.

    Importing the same run twice is harmless (``already_present``). A verification failure is
    not raised: the result names the quarantined file and the problem.

    Raises:
        StoreError: a different run with the same id is in the store, or the store cannot be
            written (nothing is quarantined then: the export itself is fine).
    """
    run_id: str | None = None
    try:
        export = _parse(data)
        run_id = export.manifest.run_id
        _check(export)
    except _Invalid as exc:
        problem = str(exc)
        return ImportResult(
            run_id, False, quarantined=_quarantine(store, data, run_id, problem), problem=problem
        )
    m = export.manifest
    try:
        present: RunManifest | None = store.get_run(m.run_id)
    except RunNotFound:
        present = None
    if present is not None:
        if present.head_hash == m.head_hash and present.entry_count == m.entry_count:
            return ImportResult(m.run_id, False, already_present=True, labels=export.labels)
        raise StoreError(f"a different run {m.run_id} is already in {str(store.path)!r}")
    store.adopt_run(m, export.entries)
    return ImportResult(m.run_id, True, labels=export.labels)
