"""Exporting a run and importing it into another store, with its hash chain checked."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING

import orjson
import pytest
import zstandard

from simtrio.recording import (
    RunStatus,
    RunStore,
    RunUnusable,
    StoreError,
    export_run,
    import_run,
)
from simtrio.recording.format import Plane
from simtrio.recording.records import PendingEntry
from simtrio.recording.transfer import parse_export, quarantine_dir
from tests.recording.helpers import CREATE_TEXT, end_run

if TYPE_CHECKING:
    from pathlib import Path


def _record(
    store: RunStore, *, end: bool = True, entries: int = 3, run_id: str | None = None
) -> str:
    run = store.begin_run(
        run_id=run_id,
        create_request=CREATE_TEXT,
        server_url="ws://127.0.0.1:1/backtest",
        simtrio_version="1.0",
    )
    batch = [
        PendingEntry(
            run.next_seq + i,
            time.time_ns(),
            Plane.CONTROL if i % 2 else Plane.DATA,
            "slotNotification",
            "s1",
            None,
            f'{{"method":"slotNotification","params":{i}}}'.encode(),
        )
        for i in range(entries)
    ]
    store.append(run, batch)
    if end:
        end_run(store, run)
    store.release(run)
    return run.run_id


def _lines(data: bytes) -> list[bytes]:
    return zstandard.ZstdDecompressor().decompress(data).split(b"\n")[:-1]


def _pack(lines: list[bytes]) -> bytes:
    return zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n")


@pytest.fixture
def source(tmp_path: Path) -> RunStore:
    with RunStore.open(tmp_path / "worker.db") as store:
        yield store


@pytest.fixture
def target(tmp_path: Path) -> RunStore:
    with RunStore.open(tmp_path / "main.db") as store:
        yield store


def test_a_run_round_trips_with_identical_entries(source: RunStore, target: RunStore) -> None:
    run_id = _record(source)
    result = import_run(target, export_run(source, run_id, labels={"cell": "a"}))
    assert result.imported
    assert result.ok
    assert result.labels == {"cell": "a"}
    assert target.get_run(run_id) == source.get_run(run_id)
    assert list(target.iter_entries(run_id)) == list(source.iter_entries(run_id))
    assert target.verify(run_id).intact


def test_importing_twice_writes_nothing_the_second_time(source: RunStore, target: RunStore) -> None:
    data = export_run(source, _record(source))
    assert import_run(target, data).imported
    again = import_run(target, data)
    assert not again.imported
    assert again.already_present
    assert len(target.list_runs()) == 1


def test_a_different_run_with_the_same_id_is_refused(
    source: RunStore, target: RunStore, tmp_path: Path
) -> None:
    run_id = _record(source)
    import_run(target, export_run(source, run_id))
    with RunStore.open(tmp_path / "other.db") as other:
        _record(other, entries=5, run_id=run_id)
        clash = export_run(other, run_id)
    with pytest.raises(StoreError, match="different run"):
        import_run(target, clash)
    assert target.get_run(run_id) == source.get_run(run_id)


def test_a_crashed_run_exports_but_a_running_one_does_not(source: RunStore) -> None:
    run = source.begin_run(create_request=None, server_url=None, simtrio_version="1")
    with pytest.raises(RunUnusable, match="RUNNING"):
        export_run(source, run.run_id)
    source.release(run)
    assert source.recover()[0].status is RunStatus.CRASHED_RECOVERED
    assert parse_export(export_run(source, run.run_id)).manifest.status is (
        RunStatus.CRASHED_RECOVERED
    )


def _tamper_payload(lines: list[bytes]) -> list[bytes]:
    row = orjson.loads(lines[2])
    row[6] = base64.b64encode(b'{"method":"slotNotification","params":99}').decode()
    return [*lines[:2], orjson.dumps(row), *lines[3:]]


def _drop_entry(lines: list[bytes]) -> list[bytes]:
    return [*lines[:2], *lines[3:]]


def _drop_tail(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


def _wrong_counter(lines: list[bytes]) -> list[bytes]:
    header = orjson.loads(lines[0])
    header["manifest"]["data_count"] += 1
    return [orjson.dumps(header), *lines[1:]]


def _garbage(_lines: list[bytes]) -> list[bytes]:
    return [b"not json"]


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (_tamper_payload, "does not match its hash"),
        (_drop_entry, "is missing"),
        (_drop_tail, "manifest records"),
        (_wrong_counter, "counters"),
        (_garbage, "not JSON"),
    ],
)
def test_a_damaged_export_is_quarantined_never_merged(
    source: RunStore, target: RunStore, tamper: object, problem: str
) -> None:
    run_id = _record(source)
    damaged = _pack(tamper(_lines(export_run(source, run_id))))  # type: ignore[operator]
    result = import_run(target, damaged)
    assert not result.imported
    assert not result.ok
    assert result.problem is not None
    assert problem in result.problem
    assert target.list_runs() == []
    assert result.quarantined is not None
    assert result.quarantined.parent == quarantine_dir(target)
    assert result.quarantined.read_bytes() == damaged
    assert problem in result.quarantined.with_suffix(".problem").read_text()


def test_bytes_that_are_no_export_are_quarantined(target: RunStore) -> None:
    result = import_run(target, b"\x00\x01 nothing")
    assert result.run_id is None
    assert result.quarantined is not None
    assert target.list_runs() == []


def test_a_malformed_run_id_cannot_name_a_file(source: RunStore, target: RunStore) -> None:
    lines = _lines(export_run(source, _record(source)))
    header = orjson.loads(lines[0])
    header["manifest"]["run_id"] = "../../escape"
    result = import_run(target, _pack([orjson.dumps(header), *lines[1:]]))
    assert result.problem == "the run id is malformed"
    assert result.quarantined is not None
    assert result.quarantined.parent == quarantine_dir(target)
