"""``simtrio compare`` on hand-made simtrio-format run files (sim-format: test_simfiles)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from simtrio.cli.compare import compare_runs
from simtrio.cli.main import main
from simtrio.cli.runfile import RunFileError, read_run_file

if TYPE_CHECKING:
    from pathlib import Path


def _session(start: int, end: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "session_id": f"backtest_{start}",
        "start_slot": start,
        "end_slot": end,
        "status": "completed",
        "slots": end - start + 1,
        "total_slots": end - start + 1,
        "transactions": 3,
        "failed_transactions": 1,
        "account_diffs": 0,
        "correct": 3,
        "incorrect": 0,
        "execution_errors": 0,
        "errors": 0,
    }
    base.update(overrides)
    return base


def _write_run(
    path: Path, txs: dict[str, bool], sessions: list[dict[str, Any]], summary: bool = True
) -> Path:
    lines: list[dict[str, Any]] = [{"type": "metadata", "start_slot": 0, "end_slot": 199}]
    for i, (sig, ok) in enumerate(txs.items()):
        lines.append(
            {"type": "transaction", "session_id": "s", "slot": i, "signature": sig, "success": ok}
        )
    if summary:
        keys = ("slots", "transactions", "failed_transactions", "account_diffs", "correct",
                "incorrect", "execution_errors", "errors")  # fmt: skip
        totals = {k: sum(s[k] for s in sessions) for k in keys}
        totals["failed_sessions"] = sum(1 for s in sessions if s["status"] == "failed")
        lines.append({"type": "summary", "sessions": sessions, "totals": totals})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


TXS = {"sigA": True, "sigB": False, "sigC": True}


def test_identical_runs_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sessions = [_session(0, 99), _session(100, 199)]
    a = _write_run(tmp_path / "a.ndjson", TXS, sessions)
    b = _write_run(tmp_path / "b.ndjson", TXS, sessions)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "No regressions." in out
    assert "Regressions (success -> failure): none" in out
    assert main(["compare", str(a), str(b), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["regression"] is False
    assert result["regressions"] == result["improvements"] == result["balances"] == []
    summary = result["summary"]
    assert [s["start_slot"] for s in summary["sessions"]] == [0, 100]
    assert all(v in (0, None) for v in summary["totals"]["delta"].values())


def test_success_to_failure_is_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write_run(tmp_path / "a.ndjson", TXS, [_session(0, 99)])
    b = _write_run(
        tmp_path / "b.ndjson", {**TXS, "sigA": False}, [_session(0, 99, failed_transactions=2)]
    )
    assert main(["compare", str(a), str(b), "--json"]) == 1
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["regression"] is True
    assert result["regressions"] == [
        {"signature": "sigA", "slot": 0, "baseline_error": None, "experiment_error": None}
    ]
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSIONS:" in out
    assert "slot 0  sigA" in out


def test_fixing_a_transaction_is_not_a_regression(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a.ndjson", TXS, [_session(0, 99)])
    b = _write_run(tmp_path / "b.ndjson", {**TXS, "sigB": True}, [_session(0, 99)])
    assert main(["compare", str(a), str(b)]) == 0
    result = compare_runs(read_run_file(a), read_run_file(b))
    assert [c["signature"] for c in result.improved_transactions] == ["sigB"]
    assert result.regressed_transactions == []
    assert not result.regressed


@pytest.mark.parametrize(
    ("field", "value"), [("incorrect", 2), ("execution_errors", 1), ("errors", 1)]
)
def test_more_incorrect_or_errors_is_a_regression(tmp_path: Path, field: str, value: int) -> None:
    a = _write_run(tmp_path / "a.ndjson", TXS, [_session(0, 99)])
    b = _write_run(tmp_path / "b.ndjson", TXS, [_session(0, 99, **{field: value})])
    result = compare_runs(read_run_file(a), read_run_file(b))
    assert result.regressed
    assert result.totals["delta"][field] == value
    assert result.sessions[0]["delta"][field] == value
    assert main(["compare", str(a), str(b)]) == 1


def test_a_failed_sub_session_is_a_regression(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a.ndjson", TXS, [_session(0, 99)])
    b = _write_run(tmp_path / "b.ndjson", TXS, [_session(0, 99, status="failed")])
    assert main(["compare", str(a), str(b)]) == 1


def test_unreadable_input_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write_run(tmp_path / "a.ndjson", TXS, [_session(0, 99)])
    bad = tmp_path / "bad.ndjson"
    bad.write_text("not json\n")
    assert main(["compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.ndjson:1: not a JSON line" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["compare", str(good), str(tmp_path / "missing.ndjson")]) == 2
    with pytest.raises(RunFileError):
        read_run_file(bad)


def test_a_run_cut_short_has_no_summary(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a.ndjson", TXS, [_session(0, 99)])
    b = _write_run(tmp_path / "b.ndjson", TXS, [_session(0, 99)], summary=False)
    result = compare_runs(read_run_file(a), read_run_file(b))
    assert result.regressed
    assert any("no summary" in r for r in result.regressions)
