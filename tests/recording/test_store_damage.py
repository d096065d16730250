"""A damaged run never locks the store; an empty file is not a store; a full disk is an error.

Damage is made the way it happens in the field: a row written by another tool with the wrong
storage type (a payload as TEXT), bytes that are not UTF-8 in a text column, a manifest with a
status nobody knows, a zero-length file where a store should be, and a disk that fills up
under a recorder (SQLite's ``max_page_count``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING

import pytest
import trio

from simtrio.cli.main import main
from simtrio.recording import (
    RecordingFailed,
    RunStatus,
    RunStore,
    StoreError,
    get_run,
    list_runs,
    open_recorder,
)
from simtrio.recording.format import Plane
from simtrio.recording.records import ActiveRun, PendingEntry
from simtrio.wire import types
from tests.recording.helpers import end_run, sql

if TYPE_CHECKING:
    from pathlib import Path


def _record(store: RunStore, count: int, *, end: bool = True) -> str:
    run: ActiveRun = store.begin_run(create_request=None, server_url=None, simtrio_version="x")
    store.append(
        run,
        [
            PendingEntry(run.next_seq + i, time.time_ns(), Plane.CONTROL, "k", "s", None, b"{}")
            for i in range(count)
        ],
    )
    if end:
        end_run(store, run)
    store.release(run)  # without an end, this is what a killed recorder leaves
    return run.run_id


def _three_runs(tmp_path: Path) -> tuple[Path, str, str, str]:
    """A store holding an ended run, a crashed one and another ended one: its path and ids."""
    path = tmp_path / "runs.db"
    with RunStore.open(path) as store:
        return path, _record(store, 3), _record(store, 3, end=False), _record(store, 2)


def test_a_text_payload_in_a_crashed_run_is_quarantined_and_the_rest_works(
    tmp_path: Path,
) -> None:
    path, good, crashed, other = _three_runs(tmp_path)
    sql(
        path,
        "UPDATE entries SET payload = CAST(payload AS TEXT) WHERE run_id = ? AND seq = 2",
        crashed,
    )
    with RunStore.open(path) as store:  # the recovery sweep meets the bad row
        [recovered] = store.recovered
        assert (recovered.run_id, recovered.status) == (crashed, RunStatus.QUARANTINED)
        assert (
            recovered.problem == "entry 2 is malformed: its payload is stored as text, not binary"
        )
        statuses = {m.run_id: m.status for m in store.list_runs()}
        assert statuses == {
            good: RunStatus.ENDED,
            crashed: RunStatus.QUARANTINED,
            other: RunStatus.ENDED,
        }
        assert [store.verify(r).intact for r in (good, crashed, other)] == [True, False, True]
        assert len(list(store.iter_entries(good))) == 5
        with pytest.raises(StoreError, match="entry 2 is unreadable"):
            list(store.iter_entries(crashed))
        new = _record(store, 1)
    assert get_run(path, new).status is RunStatus.ENDED


def test_a_bad_row_in_an_ended_run_is_found_by_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, good, _, other = _three_runs(tmp_path)
    sql(path, "UPDATE entries SET payload = 'oops' WHERE run_id = ? AND seq = 3", good)
    sql(
        path,
        "UPDATE entries SET kind = CAST(x'ff00fe' AS TEXT) WHERE run_id = ? AND seq = 2",
        other,
    )
    assert main(["runs", "verify", str(path), "--json"]) == 1
    results = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert results[good]["problem"] == (
        "entry 3 is malformed: its payload is stored as text, not binary"
    )
    assert results[other]["problem"] == "entry 2 is malformed: kind is not UTF-8 text"
    assert [r["intact"] for r in results.values()].count(True) == 1
    assert main(["runs", "list", str(path), "--json"]) == 0
    listed = {r["run_id"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert listed[good] == listed[other] == "QUARANTINED"


def test_a_malformed_manifest_row_lists_as_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, good, crashed, other = _three_runs(tmp_path)
    sql(path, "UPDATE runs SET status = 'WEIRD' WHERE run_id = ?", good)
    sql(path, "UPDATE runs SET create_request = CAST(x'c328' AS TEXT) WHERE run_id = ?", other)
    runs = {m.run_id: m for m in list_runs(path)}
    assert runs[crashed].status is RunStatus.CRASHED_RECOVERED
    for run_id, what in ((good, "status 'WEIRD'"), (other, "create_request is not UTF-8")):
        manifest = runs[run_id]
        assert manifest.status is RunStatus.QUARANTINED
        assert manifest.problem is not None
        assert what in manifest.problem
    with RunStore.open(path) as store:
        assert not store.verify(good).intact
    assert main(["runs", "list", str(path)]) == 0
    assert capsys.readouterr().out.count("QUARANTINED") == 2


@pytest.mark.parametrize("content", [b"", None])
def test_an_empty_file_is_refused_not_initialised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    path = tmp_path / "runs.db"
    if content is None:  # a SQLite database with nothing in it (not zero bytes)
        sql(path, "PRAGMA user_version = 0")
        sql(path, "VACUUM")
    else:
        path.write_bytes(content)
    size = path.stat().st_size
    with pytest.raises(StoreError, match="empty"):
        RunStore.open(path)
    assert path.stat().st_size == size
    assert main(["runs", "list", str(path)]) == 2  # unreadable input
    assert "empty" in capsys.readouterr().err
    assert path.stat().st_size == size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


async def test_an_empty_file_is_refused_by_the_recorder(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.touch()
    with pytest.raises(StoreError, match="empty file"):
        async with open_recorder(path, create_params=None, server_url=None):
            pass
    assert path.stat().st_size == 0


def test_a_new_store_is_created_whole_by_concurrent_openers(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def opener() -> None:
        start.wait()
        try:
            with RunStore.open(path) as store:
                _record(store, 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(list_runs(path)) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


async def test_a_full_disk_ends_the_run_as_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    noise = os.urandom(4096).hex()  # incompressible: every entry needs new pages

    async def fill_up() -> None:
        async with open_recorder(path, create_params=None, server_url=None, flush_size=4) as rec:
            store: RunStore = rec._store  # pyright: ignore[reportPrivateUsage]
            conn = store._conn  # pyright: ignore[reportPrivateUsage]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + 8}")  # the disk fills up soon
            with trio.fail_after(10):
                for n in range(1000):
                    await rec.record_control(
                        "s1", types.UnknownResponse("noise", {"n": n, "data": noise})
                    )
                    await rec.flush()

    with pytest.raises(RecordingFailed) as info:
        await fill_up()
    assert "full" in str(info.value)
    run = list_runs(path)[-1]
    assert run.status is RunStatus.CRASHED_RECOVERED
    assert run.outcome == "error"
    assert run.problem is not None
    assert "full" in run.problem
    with RunStore.open(path) as store:  # a later sweep leaves it as it is
        assert store.recovered == ()
        assert store.verify(run.run_id).intact
        assert store.get_run(run.run_id).outcome == "error"
