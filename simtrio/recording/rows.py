"""Reading stored rows without trusting them: every value is checked before it is used.

A row whose values have the wrong type or encoding is damage of its run, never a crash: an
entry row raises ``ValueError`` naming what is wrong (the caller quarantines the run), and a
manifest row comes back as a ``QUARANTINED`` view that says why.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Final

import attrs

from simtrio.recording.format import PLANE_VALUES, RunStatus
from simtrio.recording.records import RunManifest

if TYPE_CHECKING:
    from collections.abc import Sequence

HASH_SIZE: Final = 32
_MALFORMED: Final = "the run's manifest row is malformed"


def text_column(value: object, name: str) -> str | None:
    """A text column read as bytes (or str): None stays None; ValueError if it is not text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{name} is not UTF-8 text") from None
    raise ValueError(f"{name} is not text")


def entry_row(
    row: Sequence[object],
) -> tuple[int, int, str, str, str | None, str | None, bytes, bytes]:
    """One row of ``CHECKED_ENTRY_COLUMNS`` as typed values; ValueError names what is wrong."""
    seq, ts_ns, plane, kind, session_id, topic, payload_type, payload, hash_type, digest = row
    if type(seq) is not int or type(ts_ns) is not int:
        raise ValueError("its sequence number or time is not an integer")
    plane_text = text_column(plane, "plane")
    kind_text = text_column(kind, "kind")
    if plane_text not in PLANE_VALUES or kind_text is None:
        raise ValueError(f"unknown plane {plane_text!r}" if kind_text else "it has no kind")
    if payload_type != "blob" or not isinstance(payload, bytes):
        raise ValueError(f"its payload is stored as {payload_type}, not binary")
    if hash_type != "blob" or not isinstance(digest, bytes) or len(digest) != HASH_SIZE:
        raise ValueError("its hash is not a 32-byte binary value")
    return (
        seq,
        ts_ns,
        plane_text,
        kind_text,
        text_column(session_id, "session_id"),
        text_column(topic, "topic"),
        payload,
        digest,
    )


def manifest_row(row: Sequence[object]) -> RunManifest:
    """A manifest row (text columns as str or bytes); a damaged row gives a QUARANTINED view."""
    problems: list[str] = []

    def text(value: object, name: str, *, required: bool = False) -> str | None:
        try:
            out = text_column(value, name)
        except ValueError as exc:
            problems.append(str(exc))
            if isinstance(value, bytes):
                return value.decode("utf-8", errors="replace")
            return None
        if out is None and required:
            problems.append(f"{name} is missing")
        return out

    def number(value: object, name: str, *, required: bool = True) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value is None and not required:
            return None
        problems.append(f"{name} is not an integer")
        return None

    (
        run_id,
        parent,
        status,
        create_request,
        url,
        version,
        started,
        ended,
        entries,
        controls,
        datas,
        sents,
        head,
        outcome,
        problem,
    ) = row
    status_text = text(status, "status", required=True)
    try:
        run_status = RunStatus(status_text or "")
    except ValueError:
        problems.append(f"status {status_text!r} is not a run status")
        run_status = RunStatus.QUARANTINED
    if not isinstance(head, bytes):
        problems.append("head_hash is not binary")
    manifest = RunManifest(
        run_id=text(run_id, "run_id", required=True) or "",
        parent_run_id=text(parent, "parent_run_id"),
        status=run_status,
        create_request=text(create_request, "create_request"),
        server_url=text(url, "server_url"),
        simtrio_version=text(version, "simtrio_version", required=True) or "",
        started_at_ns=number(started, "started_at_ns") or 0,
        ended_at_ns=number(ended, "ended_at_ns", required=False),
        entry_count=number(entries, "entry_count") or 0,
        control_count=number(controls, "control_count") or 0,
        data_count=number(datas, "data_count") or 0,
        sent_count=number(sents, "sent_count") or 0,
        head_hash=head if isinstance(head, bytes) else b"",
        outcome=text(outcome, "outcome"),
        problem=text(problem, "problem"),
    )
    if not problems:
        return manifest
    return attrs.evolve(
        manifest,
        status=RunStatus.QUARANTINED,
        problem=f"{_MALFORMED}: {'; '.join(problems)}",
        malformed=True,
    )
