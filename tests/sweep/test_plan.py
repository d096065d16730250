"""Cells, keys, grids and the outcome table: plain data, no I/O."""

from __future__ import annotations

import pytest

from simtrio.params import CreateSession
from simtrio.sweep import Cell, SweepError, SweepTable, cell_key, expand_grid
from simtrio.sweep.plan import CellAttempt, check_cells, key_fields

A = CreateSession(0, end_slot=9)
B = CreateSession(100, end_slot=109)


def _row(key: str, attempt: int, outcome: str) -> CellAttempt:
    return CellAttempt(
        sweep="s",
        key=key,
        attempt=attempt,
        outcome=outcome,
        run_id=f"run-{key}-{attempt}",
        start_slot=0,
        end_slot=9,
        params={},
        result={"n": attempt},
        error=None if outcome == "ok" else "boom",
        started_at_ns=attempt,
        duration=1.0,
        executor="local",
    )


def test_a_key_names_the_range_and_the_parameters_in_name_order() -> None:
    assert cell_key(A, {}) == "0-9"
    assert cell_key(A, {"step": 2, "alpha": "x"}) == '0-9/alpha="x",step=2'
    assert Cell(A, {"b": [1, 2], "a": None}).key == "0-9/a=null,b=[1,2]"
    assert Cell(A, {"b": 1}, key="mine").key == "mine"


def test_parameters_must_be_json_data() -> None:
    with pytest.raises(SweepError, match="JSON"):
        Cell(A, {"x": object()})  # type: ignore[dict-item]


def test_a_grid_is_every_range_times_every_combination() -> None:
    cells = expand_grid([A, B], {"step": [1, 2], "mode": ["a", "b", "c"]}, {"fixed": True})
    assert len(cells) == 12
    assert len({c.key for c in cells}) == 12
    assert cells[0].key == '0-9/mode="a",step=1'
    assert cells[0].params == {"fixed": True, "mode": "a", "step": 1}
    assert cells[-1].create == B


@pytest.mark.parametrize("grid", [{"step": []}, {"step": "12"}])
def test_a_grid_value_must_be_a_non_empty_list(grid: dict[str, object]) -> None:
    with pytest.raises(SweepError, match="non-empty list"):
        expand_grid([A], grid)  # type: ignore[arg-type]


def test_cells_must_exist_and_have_distinct_keys() -> None:
    with pytest.raises(SweepError, match="at least one"):
        check_cells([])
    with pytest.raises(SweepError, match="two cells"):
        check_cells([Cell(A), Cell(B, key="0-9")])


def test_the_table_takes_a_success_over_later_failures_and_lists_pending_cells() -> None:
    rows = [_row("a", 1, "failed"), _row("a", 2, "ok"), _row("b", 1, "failed")]
    cells = [Cell(A, key="a"), Cell(A, key="b"), Cell(B, key="c")]
    table = SweepTable.build("s", rows, cells)
    by_key = table.by_key()
    assert by_key["a"].outcome == "ok"
    assert by_key["a"].attempts == 2
    assert by_key["a"].run_id == "run-a-2"
    assert by_key["b"].outcome == "failed"
    assert by_key["b"].error == "boom"
    assert by_key["c"].outcome == "pending"
    assert by_key["c"].start_slot == 100
    assert not table.all_ok
    assert table.to_json()["counts"] == {
        "ok": 1,
        "failed": 1,
        "crashed": 0,
        "quarantined": 0,
        "pending": 1,
    }


def test_key_fields_are_the_first_scalars_of_a_result_object() -> None:
    result = {"a": 1, "nested": {"x": 1}, "b": "two", "c": 3.5, "d": True, "e": 5}
    assert key_fields(result) == [("a", 1), ("b", "two"), ("c", 3.5), ("d", True)]
    assert key_fields(7) == [("result", 7)]
    assert key_fields(None) == []
