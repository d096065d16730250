"""The ``sim`` file formats: hand-written fixtures in the format of the Rust command line.

``fixtures/sim_baseline.ndjson`` and ``fixtures/sim_experiment.ndjson`` follow the ``sim``
NDJSON layout record for record; between them one transaction goes from success to failure,
one from failure to success, and one token balance change differs. ``fixtures/sim_legacy.json``
is the older single-document layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simtrio.cli.main import main
from simtrio.cli.report import tx_facts
from simtrio.cli.runfile import RunFileError, read_run_file
from simtrio.cli.simfile import sim_transaction

FIXTURES = Path(__file__).parent / "fixtures"
BASELINE = FIXTURES / "sim_baseline.ndjson"
EXPERIMENT = FIXTURES / "sim_experiment.ndjson"
LEGACY = FIXTURES / "sim_legacy.json"

BROKEN = "4Nd1mYJqkz1HkT3b2bV7rM4c6Qv8SxqT1a7WbKkdZ3pF9uZbLZ1x9yWk6wqC8s3E2GfJ7hYd5vA1nR4tU6pXy2Q"
FIXED = "2hQbRzM3y5xW8vKpL1nF6dJtC9aE4uG7sB2kZ5mX8rV3qT6wY1pN4jH9cD7fA2bS5eL8gK3vU6oI1yR4tW7zX9mQ"
WALLET = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
TOKEN_ACCOUNT = "3uetDDizgTtadDHZ6rETLWk9Cp3mvDLBAafYCvb4CM2e"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def _json_out(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_sim_files_are_read_as_runs() -> None:
    run = read_run_file(BASELINE)
    assert run.format == "sim"
    assert run.metadata is not None
    assert run.metadata["start_slot"] == 250000000
    assert len(run.transactions) == 3
    assert run.account_diffs == 1
    assert run.session_ids == ["backtest_5f1c0a", "backtest_9e22b7"]
    assert run.totals() == {"total": 3, "successes": 2, "failures": 1}
    assert run.transactions[FIXED]["error"] == '{"InstructionError":[0,{"Custom":6001}]}'
    assert run.skipped == 0


def test_compare_finds_the_regression_in_sim_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(BASELINE), str(EXPERIMENT)]) == 1
    out = capsys.readouterr().out
    assert "No regressions." not in out
    assert "Regressions (success -> failure): 1" in out
    assert BROKEN in out
    assert main(["compare", str(BASELINE), str(EXPERIMENT), "--json"]) == 1
    result = _json_out(capsys)
    assert [r["signature"] for r in result["regressions"]] == [BROKEN]
    assert (
        result["regressions"][0]["experiment_error"] == '{"InstructionError":[0,{"Custom":6022}]}'
    )
    assert [r["signature"] for r in result["improvements"]] == [FIXED]
    assert result["balances"] == [
        {
            "account": TOKEN_ACCOUNT,
            "mint": USDC,
            "baseline_change": 1500000,
            "experiment_change": 2500000,
            "difference": 1000000,
        }
    ]
    totals = result["summary"]["totals"]
    assert totals["baseline"] == totals["experiment"] == {"total": 3, "successes": 2, "failures": 1}


@pytest.mark.parametrize("section", ["regressions", "improvements", "balances", "summary"])
def test_compare_one_section(section: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The exit status says whether there is a regression, whichever section is shown.
    assert main(["compare", str(BASELINE), str(EXPERIMENT), section, "--json"]) == 1
    result = _json_out(capsys)
    shown = {"regressions", "improvements", "balances", "summary"} & result.keys()
    assert shown == {section}


def test_the_reverse_comparison_has_the_improvement_as_regression(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compare", str(EXPERIMENT), str(BASELINE), "regressions", "--json"]) == 1
    assert [r["signature"] for r in _json_out(capsys)["regressions"]] == [FIXED]


def test_identical_sim_files_compare_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(BASELINE), str(BASELINE)]) == 0
    assert "No regressions." in capsys.readouterr().out


def test_the_legacy_document_is_read_and_compared(capsys: pytest.CaptureFixture[str]) -> None:
    run = read_run_file(LEGACY)
    assert run.format == "sim-legacy"
    assert run.session_ids == ["backtest_5f1c0a", "backtest_9e22b7"]
    assert run.totals() == {"total": 1, "successes": 1, "failures": 0}
    assert main(["compare", str(LEGACY), str(EXPERIMENT), "regressions", "--json"]) == 1
    assert [r["signature"] for r in _json_out(capsys)["regressions"]] == [BROKEN]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ('{"type":"block","data":{}}\n{"kind":"x"}\n', "no run records"),
        ('{"hello": "world"}\n', "not a run"),
        ("not json at all\n", ":1: not a JSON line"),
        ("[1, 2]\n", ":1: not a JSON object"),
    ],
)
def test_unreadable_input_is_an_error_not_an_empty_run(
    tmp_path: Path, content: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text(content)
    with pytest.raises(RunFileError, match=expected):
        read_run_file(bad)
    assert main(["compare", str(BASELINE), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert len(err.strip().splitlines()) == 1
    assert main(["summarize", str(bad)]) == 2


def test_a_truncated_file_is_an_error_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _lines(BASELINE)
    cut = tmp_path / "cut.ndjson"
    cut.write_text("".join(lines[:4]) + lines[4][:50])  # the process died mid-write
    with pytest.raises(RunFileError, match=r"cut.ndjson:5: truncated"):
        read_run_file(cut)
    assert main(["compare", str(BASELINE), str(cut)]) == 2
    assert "cut.ndjson:5: truncated" in capsys.readouterr().err


def test_records_before_the_metadata_are_an_error(tmp_path: Path) -> None:
    lines = _lines(BASELINE)
    headless = tmp_path / "headless.ndjson"
    headless.write_text("".join(lines[1:]))
    with pytest.raises(RunFileError, match=r"headless.ndjson:1: no metadata record"):
        read_run_file(headless)


def test_unknown_extra_records_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _lines(BASELINE)
    extra = '{"type":"usage","data":{"credits":12}}\n'
    path = tmp_path / "extra.ndjson"
    path.write_text("".join([*lines[:3], extra, *lines[3:], extra]))
    run = read_run_file(path)
    assert run.skipped == 2
    assert len(run.transactions) == 3
    assert main(["compare", str(path), str(BASELINE)]) == 0
    assert "skipped 2 record(s) of unknown type" in capsys.readouterr().err


def test_a_run_cut_short_without_summary_is_read(tmp_path: Path) -> None:
    path = tmp_path / "unfinished.ndjson"
    path.write_text("".join(_lines(BASELINE)[:-1]))
    run = read_run_file(path)
    assert not run.finished
    assert run.totals() == {"total": 3, "successes": 2, "failures": 1}


def test_a_run_store_needs_a_run_id(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(RunFileError, match="RUN_ID"):
        read_run_file(db)


def test_summarize_shows_opening_and_closing_balances(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["summarize", str(BASELINE), "--accounts", WALLET, "--json"]) == 0
    out = _json_out(capsys)
    assert (out["start_slot"], out["end_slot"]) == (250000000, 250000199)
    assert (out["total"], out["successes"], out["failures"]) == (3, 2, 1)
    sol, usdc = out["balances"]
    assert sol["mint"] is None
    assert (sol["opening"], sol["closing"], sol["change"]) == (2000000000, 1999985000, -15000)
    assert (sol["first_slot"], sol["last_slot"]) == (250000003, 250000150)
    assert usdc["mint"] == USDC
    assert (usdc["opening"], usdc["closing"], usdc["change"]) == (5000000, 6500000, 1500000)
    assert usdc["decimals"] == 6
    assert main(["summarize", str(BASELINE), "--accounts", f"{WALLET},nobody"]) == 0
    text = capsys.readouterr().out
    assert "1999985000" in text
    assert "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4" in text


def test_sim_transaction_reads_balances_from_meta() -> None:
    payload = {
        "slot": 7,
        "blockTime": 1700000000,
        "transaction": {
            "signatures": ["SIG"],
            "message": {"accountKeys": [{"pubkey": "Payer"}, "Pool", "Prog"]},
        },
        "meta": {
            "err": None,
            "preBalances": [100, 50, 1, 9],
            "postBalances": [90, 60, 1, 9],
            "loadedAddresses": {"writable": ["Loaded"], "readonly": []},
            "preTokenBalances": [
                {"accountIndex": 3, "mint": "M", "owner": "Payer",
                 "uiTokenAmount": {"amount": "5", "decimals": 2}},
            ],
            "postTokenBalances": [
                {"accountIndex": 3, "mint": "M", "owner": "Payer",
                 "uiTokenAmount": {"amount": "8", "decimals": 2}},
                {"accountIndex": 1, "mint": "N", "uiTokenAmount": {"amount": "1", "decimals": 0}},
            ],
            "logMessages": ["Program log: hi"],
        },
    }  # fmt: skip
    record = sim_transaction(7, tx_facts(payload), payload)
    assert record == {
        "slot": 7,
        "timestamp": 1700000000,
        "signature": "SIG",
        "success": True,
        "logs": ["Program log: hi"],
        "sol_changes": [
            {"account": "Payer", "pre": 100, "post": 90, "change": -10},
            {"account": "Pool", "pre": 50, "post": 60, "change": 10},
        ],
        "token_changes": [
            {"account": "Loaded", "mint": "M", "owner": "Payer", "pre": 5, "post": 8,
             "change": 3, "decimals": 2},
            {"account": "Pool", "mint": "N", "pre": 0, "post": 1, "change": 1, "decimals": 0},
        ],
    }  # fmt: skip
    failed = {**payload, "meta": {**payload["meta"], "err": "AccountInUse"}}
    record = sim_transaction(7, tx_facts(failed), failed)
    assert record["success"] is False
    assert record["error"] == "AccountInUse"


_TX_KEYS = {"slot", "timestamp", "signature", "success", "error", "logs", "sol_changes",
            "token_changes", "account_diffs"}  # fmt: skip


def test_run_writes_the_sim_format_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.ndjson"
    argv = ["run", "--embedded", "--start-slot", "1000", "--end-slot", "1149"]
    argv += ["--subscriptions", "transactions,account-diff", "--output-file", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(set(r) == {"type", "data"} for r in records)
    kinds = [r["type"] for r in records]
    assert kinds[0] == "metadata"
    assert kinds[-1] == "summary"
    assert kinds[1:3] == ["session_started", "session_started"]
    assert set(kinds[3:-1]) == {"tx", "diff"}
    meta = records[0]["data"]
    assert set(meta) == {"start_slot", "end_slot", "program_ids", "ran_at_unix_secs"}
    assert (meta["start_slot"], meta["end_slot"]) == (1000, 1149)
    started = [r["data"] for r in records if r["type"] == "session_started"]
    assert [(s["start_slot"], s["end_slot"]) for s in started] == [(1000, 1099), (1100, 1149)]
    txs = [r["data"] for r in records if r["type"] == "tx"]
    assert all(set(t) <= _TX_KEYS for t in txs)
    assert all(("error" in t) == (not t["success"]) for t in txs)
    assert any(not t["success"] for t in txs)
    assert all(t["logs"] and t["sol_changes"] for t in txs)
    for t in txs:
        for change in t["sol_changes"]:
            assert change["change"] == change["post"] - change["pre"]
    diffs = [r["data"] for r in records if r["type"] == "diff"]
    assert all({"slot", "account", "pre_state", "post_state"} <= set(d) for d in diffs)
    summary = records[-1]["data"]
    assert summary["total"] == len(txs)
    assert summary["failures"] == sum(1 for t in txs if not t["success"])
    assert summary["successes"] == summary["total"] - summary["failures"]
    assert summary["session_ids"] == [s["session_id"] for s in started]
    # The file reads back as the same run.
    run = read_run_file(out)
    assert run.format == "sim"
    assert run.totals()["total"] == len(txs)
