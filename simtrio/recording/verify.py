"""Checking one run: its hash chain, its sequence (no gap) and its manifest's head and count."""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING

from simtrio.recording.format import (
    RUN_ENDED,
    RUN_STARTED,
    Plane,
    RunStatus,
    decompress_payload,
    genesis_hash,
)
from simtrio.recording.records import PendingEntry, VerifyResult, chain_hash
from simtrio.recording.rows import entry_row

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from simtrio.recording.records import RunManifest


def check_run(manifest: RunManifest, rows: Iterable[Sequence[object]]) -> VerifyResult:
    """The verdict on a run, given its manifest and its entry rows (``CHECKED_ENTRY_COLUMNS``,
    in sequence order); the first problem found is the one reported."""
    run_id = manifest.run_id
    head = genesis_hash(run_id)
    expected = 1
    ended = False

    def broken(problem: str, seq: int) -> VerifyResult:
        return VerifyResult(run_id, False, expected - 1, ended, problem, seq)

    if manifest.malformed:
        return VerifyResult(run_id, False, 0, False, manifest.problem, None)
    for row in rows:
        if type(row[0]) is not int:
            return broken(f"entry {expected} has a sequence number that is not one", expected)
        if row[0] != expected:
            return broken(f"entry {expected} is missing (next is {row[0]})", expected)
        try:
            seq, ts_ns, plane, kind, session_id, topic, stored, stored_hash = entry_row(row)
        except ValueError as exc:
            return broken(f"entry {expected} is malformed: {exc}", expected)
        if ended:
            return broken(f"entry {seq} follows run.ended", seq)
        try:
            payload = decompress_payload(stored)
        except ValueError as exc:
            return broken(f"entry {seq} is unreadable: {exc}", seq)
        entry = PendingEntry(seq, ts_ns, Plane(plane), kind, session_id, topic, payload)
        head = chain_hash(head, entry)
        if head != stored_hash:
            return broken(f"entry {seq} does not match its hash (modified)", seq)
        if seq == 1 and (plane != Plane.RUN.value or kind != RUN_STARTED):
            return broken("the first entry is not run.started", seq)
        ended = plane == Plane.RUN.value and kind == RUN_ENDED
        expected += 1
    count = expected - 1
    if count == 0:
        return VerifyResult(run_id, False, 0, False, "the run has no entries", 1)
    if count != manifest.entry_count or head != manifest.head_hash:
        return VerifyResult(
            run_id,
            False,
            count,
            ended,
            f"the run has {count} entries but its manifest records {manifest.entry_count} "
            "(entries removed or added)",
            min(count, manifest.entry_count) + 1,
        )
    if manifest.status is RunStatus.ENDED and not ended:
        return VerifyResult(run_id, False, count, ended, "ENDED run lacks run.ended", count)
    return VerifyResult(run_id, True, count, ended)
