"""Reading stores: listing (table and JSON, as ``simtrio runs list`` prints them), decoding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest

from simtrio.recording import (
    RunStatus,
    RunStore,
    StoreError,
    format_runs_table,
    list_runs,
    read_entries,
    runs_to_json,
    verify_run,
)
from simtrio.wire import rpc, types
from tests.recording.helpers import SESSION, make_single_run, sql

if TYPE_CHECKING:
    from pathlib import Path


async def test_list_runs_table_and_json(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first = await make_single_run(path)
    second = await make_single_run(path)
    sql(path, "DELETE FROM entries WHERE run_id = ? AND seq = 5", second)
    assert not verify_run(path, second).intact
    runs = list_runs(path)
    assert [(m.run_id, m.status) for m in runs] == [
        (first, RunStatus.ENDED),
        (second, RunStatus.QUARANTINED),
    ]
    table = format_runs_table(runs).splitlines()
    assert table[0].split()[:2] == ["RUN", "ID"]
    assert first in table[1]
    assert "ENDED" in table[1]
    assert "completed" in table[1]
    assert second in table[2]
    assert "QUARANTINED" in table[2]
    parsed = orjson.loads(runs_to_json(runs))
    assert [(r["run_id"], r["status"]) for r in parsed] == [
        (first, "ENDED"),
        (second, "QUARANTINED"),
    ]
    assert parsed[0]["entries"] == runs[0].entry_count
    assert parsed[0]["create_params"]["startSlot"] == 100
    assert runs_to_json([]) == "[]"


async def test_read_entries_decodes_every_plane(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    decoded = read_entries(path, run_id)
    assert decoded[0].value["run_id"] == run_id  # type: ignore[index]
    assert decoded[1].value == types.CreateBacktestSessionRequest(
        start_slot=100, end_slot=103, disconnect_timeout_secs=30
    )
    assert decoded[2].value == types.SessionCreated(SESSION, f"/backtest/{SESSION}")
    assert (decoded[3].seq_id, decoded[3].value) == (
        1,
        types.Status(types.BacktestStatus.PREPARING_BUNDLE),
    )
    data = [d.value for d in decoded if d.entry.plane.value == "data"]
    assert isinstance(data[0], rpc.AccountDiffNotification)
    assert decoded[-1].value["outcome"] == "completed"  # type: ignore[index]


def test_listing_a_missing_store_fails(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        list_runs(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


async def test_an_open_store_can_be_passed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await make_single_run(path)
    with RunStore.open(path) as store:
        assert [m.run_id for m in list_runs(store)] == [run_id]
        assert len(read_entries(store, run_id)) == store.get_run(run_id).entry_count
