"""The SQLite run store: schema, manifest, batches, hash chain, verification and recovery."""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

import pytest

from simtrio.recording import RunNotFound, RunStatus, RunStore, RunUnusable, StoreError
from simtrio.recording.format import (
    RUN_STARTED,
    Plane,
    compress_payload,
    decompress_payload,
    new_run_id,
    redact_url,
)
from simtrio.recording.records import ActiveRun, PendingEntry
from simtrio.recording.schema import APPLICATION_ID, SCHEMA_VERSION
from tests.recording.helpers import CREATE_TEXT, end_run, sql

if TYPE_CHECKING:
    from pathlib import Path


def _entry(
    run: ActiveRun, offset: int, plane: Plane = Plane.CONTROL, kind: str = "x"
) -> PendingEntry:
    text = f'{{"method":"slotNotification","params":{offset}}}'
    return PendingEntry(
        run.next_seq + offset, time.time_ns(), plane, kind, "s1", None, text.encode()
    )


def _append(store: RunStore, run: ActiveRun, count: int) -> None:
    store.append(run, [_entry(run, i) for i in range(count)])


def _begin(store: RunStore, **kwargs: object) -> ActiveRun:
    return store.begin_run(
        create_request=CREATE_TEXT,
        server_url="wss://user:secret@h.example/backtest?api_key=secret",
        simtrio_version="1.2.3",
        **kwargs,  # type: ignore[arg-type]
    )


def test_schema_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    RunStore.open(path).close()
    assert sql(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert sql(path, "PRAGMA journal_mode") == [("wal",)]
    tables = {row[0] for row in sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"runs", "entries"}


def test_manifest_and_run_started(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore.open(path) as store:
        run = _begin(store, parent_run_id="20240101T000000.000000Z-abcdef")
        manifest = store.get_run(run.run_id)
        assert manifest.status is RunStatus.RUNNING
        assert manifest.parent_run_id == "20240101T000000.000000Z-abcdef"
        assert manifest.simtrio_version == "1.2.3"
        assert manifest.server_url == "wss://h.example/backtest"  # no user info, no query
        assert manifest.create_params == {"startSlot": 1, "endSlot": 2}
        assert manifest.entry_count == 1
        [first] = list(store.iter_entries(run.run_id))
        assert (first.seq, first.plane, first.kind) == (1, Plane.RUN, RUN_STARTED)
        _append(store, run, 3)
        end_run(store, run)
        store.release(run)
        manifest = store.get_run(run.run_id)
        assert manifest.status is RunStatus.ENDED
        assert (manifest.entry_count, manifest.control_count, manifest.outcome) == (
            5,
            3,
            "completed",
        )
        assert manifest.ended_at_ns is not None
        assert manifest.to_json()["status"] == "ENDED"
        assert store.verify(run.run_id).intact
        with pytest.raises(RunNotFound):
            store.get_run("nope")


def test_run_ids_sort_by_start_time() -> None:
    earlier, later = new_run_id(1_700_000_000_000_000_000), new_run_id(1_700_000_000_000_001_000)
    assert earlier < later
    assert earlier.startswith("20231114T221320.000000Z-")


def test_batches_commit_atomically_with_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore.open(path) as store:
        run = _begin(store)
        _append(store, run, 10)
        assert sql(path, "SELECT entry_count FROM runs") == [(11,)]
        assert sql(path, "SELECT count(*) FROM entries") == [(11,)]
        bad = [_entry(run, 0), _entry(run, 5)]  # a hole inside the batch
        with pytest.raises(StoreError, match="out of order"):
            store.append(run, bad)
        assert sql(path, "SELECT count(*) FROM entries") == [(11,)]
        assert run.next_seq == 12
        store.release(run)


def test_payloads_are_zstd_compressed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore.open(path) as store:
        run = _begin(store)
        _append(store, run, 1)
        store.release(run)
    [(blob,)] = sql(path, "SELECT payload FROM entries WHERE seq = 2")
    assert isinstance(blob, bytes)
    assert blob.startswith(b"\x28\xb5\x2f\xfd")  # zstd frame magic
    assert decompress_payload(blob) == b'{"method":"slotNotification","params":0}'
    with pytest.raises(ValueError, match="zstd"):
        decompress_payload(b"not zstd")
    assert decompress_payload(compress_payload(b"")) == b""


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("UPDATE entries SET payload = ? WHERE seq = 3", "entry 3 does not match its hash"),
        ("DELETE FROM entries WHERE seq = 3", "entry 3 is missing"),
        ("DELETE FROM entries WHERE seq = 6", "manifest records 6"),
        ("UPDATE entries SET ts_ns = ts_ns + 1 WHERE seq = 2", "entry 2 does not match"),
    ],
)
def test_verify_detects_tampering_and_quarantines(
    tmp_path: Path, tamper: str, problem: str
) -> None:
    path = tmp_path / "runs.db"
    with RunStore.open(path) as store:
        run = _begin(store)
        _append(store, run, 4)
        end_run(store, run)
        store.release(run)
        run_id = run.run_id
    params = (
        (compress_payload(b'{"method":"slotNotification","params":666}'),) if "?" in tamper else ()
    )
    sql(path, tamper, *params)
    with RunStore.open(path) as store:
        result = store.verify(run_id)
        assert not result.intact
        assert result.problem is not None
        assert problem in result.problem
        manifest = store.get_run(run_id)
        assert manifest.status is RunStatus.QUARANTINED
        assert manifest.problem == result.problem
        # A quarantined run is never a parent.
        with pytest.raises(RunUnusable):
            store.begin_run(
                create_request=None,
                server_url=None,
                simtrio_version="x",
                parent_run_id=run_id,
            )


def _crash(path: Path, *, with_end: bool) -> str:
    """A run left RUNNING, as a killed recorder leaves it (its lock released by the kernel)."""
    with RunStore.open(path) as store:
        run = _begin(store)
        _append(store, run, 3)
        if with_end:
            end_run(store, run)
            # As if the status update had not landed: only the entries say the run ended.
            sql(path, "UPDATE runs SET status = 'RUNNING', outcome = NULL, ended_at_ns = NULL")
        store.release(run)
        return run.run_id


def test_recovery_without_run_ended_is_crashed_recovered(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = _crash(path, with_end=False)
    with RunStore.open(path) as store:
        [result] = store.recovered
        assert (result.run_id, result.status, result.entries) == (
            run_id,
            RunStatus.CRASHED_RECOVERED,
            4,
        )
        manifest = store.get_run(run_id)
        assert manifest.status is RunStatus.CRASHED_RECOVERED
        assert manifest.outcome == "crashed"
        assert manifest.ended_at_ns is not None
    with RunStore.open(path) as store:
        assert store.recovered == ()  # a run is recovered once


def test_recovery_with_run_ended_is_ended(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = _crash(path, with_end=True)
    with RunStore.open(path) as store:
        assert [r.status for r in store.recovered] == [RunStatus.ENDED]
        manifest = store.get_run(run_id)
        assert (manifest.status, manifest.outcome) == (RunStatus.ENDED, None)


def test_recovery_of_a_broken_running_run_quarantines_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = _crash(path, with_end=False)
    sql(path, "DELETE FROM entries WHERE seq = 2")
    with RunStore.open(path) as store:
        [result] = store.recovered
        assert result.status is RunStatus.QUARANTINED
        assert store.get_run(run_id).status is RunStatus.QUARANTINED


def test_sweep_leaves_a_live_run_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore.open(path) as writer:
        run = _begin(writer)
        _append(writer, run, 2)
        with RunStore.open(path) as other:  # same process, own lock check
            assert other.recovered == ()
            assert other.get_run(run.run_id).status is RunStatus.RUNNING
        writer.release(run)
    with RunStore.open(path) as store:
        assert [r.status for r in store.recovered] == [RunStatus.CRASHED_RECOVERED]
    assert not (tmp_path / "runs.db.locks").exists()


def test_a_recovered_run_cannot_be_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore.open(path) as writer:
        run = _begin(writer)
        writer.release(run)  # the lock goes: the next sweep takes the run over
        RunStore.open(path).close()
        with pytest.raises(StoreError, match="no longer RUNNING"):
            _append(writer, run, 1)


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run store"):
        RunStore.open(tmp_path / "missing.db", create=False)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a simtrio run store"):
        RunStore.open(other)
    assert sql(other, "PRAGMA journal_mode") == [("delete",)]  # a foreign file is left alone
    newer = tmp_path / "newer.db"
    RunStore.open(newer).close()
    sql(newer, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="schema"):
        RunStore.open(newer)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError):
        RunStore.open(garbage)


def test_redact_url() -> None:
    assert redact_url("wss://k:s@h:1/backtest?key=s#f") == "wss://h:1/backtest"
    assert redact_url("ws://127.0.0.1:7000/backtest") == "ws://127.0.0.1:7000/backtest"
    assert redact_url(None) is None
