"""``run --record`` and ``simtrio runs list/show/verify`` on a real run store.

``run --record`` hands the recorder to its managed sessions (``recorder=``), so a store holds
the raw control frames, the requests as written and the notifications as delivered; ``runs
show`` and ``compare DB:RUN_ID`` summarise those.
"""

from __future__ import annotations

import functools
import io
import json
import sqlite3
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from simtrio.cli.common import Target
from simtrio.cli.driver import RunOptions, execute_run
from simtrio.cli.main import build_parser, main
from simtrio.cli.recorded import load_recorded_run
from simtrio.cli.replay import replay_forever
from simtrio.cli.run import exit_status, options_from_args
from simtrio.recording import Plane, open_recorder, read_entries
from simtrio.server import FaultPlan, Faults, ServerConfig
from simtrio.server.chain import DEFAULT_PROGRAM_IDS
from simtrio.wire import backtest_errors, types

if TYPE_CHECKING:
    from pathlib import Path

KEY = "sekret-api-key-456"


def _last_json(text: str) -> Any:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, str]:
    """A parallel run recorded into a store and also written as NDJSON."""
    db = tmp_path / "runs.db"
    out = tmp_path / "run.ndjson"
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "149"]
    argv += ["--subscribe", "transactions", "--record", str(db), "--output", str(out)]
    status = main([*argv, "--api-key", KEY, "--json"])
    assert status == 0
    summary = _last_json(capsys.readouterr().out)
    return db, out, summary["run_id"]


def test_record_then_list_show_and_verify(
    recorded: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, out, run_id = recorded
    assert main(["runs", "list", str(db), "--json"]) == 0
    runs = _last_json(capsys.readouterr().out)
    assert [(r["run_id"], r["status"], r["outcome"]) for r in runs] == [
        (run_id, "ENDED", "completed")
    ]
    assert main(["runs", "list", str(db)]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing
    assert "0-149" in listing

    assert main(["runs", "show", str(db), run_id, "--json"]) == 0
    shown = _last_json(capsys.readouterr().out)
    assert shown["run"]["run_id"] == run_id
    recorded_totals = shown["summary"]["totals"]
    ndjson_summary = json.loads(out.read_text().splitlines()[-1])["data"]
    for name in ("slots", "transactions", "failed_transactions", "correct", "sessions"):
        assert recorded_totals[name] == ndjson_summary["totals"][name], name
    assert main(["runs", "show", str(db), run_id]) == 0
    text = capsys.readouterr().out
    assert "run_id" in text
    assert "slots run" in text

    assert main(["runs", "verify", str(db), "--json"]) == 0
    [result] = _last_json(capsys.readouterr().out)
    assert result["intact"] is True
    assert result["ended"] is True
    assert main(["runs", "verify", str(db), run_id]) == 0
    assert "ok" in capsys.readouterr().out

    assert KEY.encode() not in db.read_bytes()


def test_the_sessions_record_raw_frames(recorded: tuple[Path, Path, str]) -> None:
    db, _, run_id = recorded
    entries = read_entries(db, run_id)
    control = [d for d in entries if d.entry.plane is Plane.CONTROL]
    assert not any(d.entry.kind.startswith("event.") for d in control)
    [reply] = [d.value for d in control if isinstance(d.value, types.SessionsCreatedV2)]
    assert len(reply.session_ids) == 2
    data = [d.entry for d in entries if d.entry.plane is Plane.DATA]
    assert data
    assert {e.session_id for e in data} <= set(reply.session_ids)
    assert all(e.topic in DEFAULT_PROGRAM_IDS for e in data)  # routed by program on replay
    sent = [d.value for d in entries if d.entry.plane is Plane.SENT]
    assert isinstance(sent[0], types.CreateBacktestSessionRequest)
    assert {r.session_id for r in sent if isinstance(r, types.ContinueSessionRequestV1)} == set(
        reply.session_ids
    )


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "single"])
async def test_the_summary_of_a_run_recorded_across_a_drop_matches_the_run(
    tmp_path: Path, parallel: bool
) -> None:
    db = tmp_path / "runs.db"
    opts = RunOptions(
        target=Target(None, ""),
        start_slot=0,
        end_slot=149,
        parallel=parallel,
        subscribe=("transactions",),
        record=db,
    )
    faults = FaultPlan(control_connections={1: Faults(drop_after=25)})
    with trio.fail_after(10):
        report = await execute_run(opts, server_config=ServerConfig(faults=faults))
    assert exit_status(report) == 0
    assert report.run_id is not None
    kinds = {d.entry.kind for d in read_entries(db, report.run_id)}
    assert {"attachParallelControlSessionV2", "attachBacktestSession"} & kinds  # a re-attach
    summary = load_recorded_run(db, report.run_id).summary
    assert summary is not None
    live = report.totals(trio.current_time())
    for name in ("sessions", "slots", "transactions", "failed_transactions", "errors", "correct"):
        assert summary["totals"][name] == live[name], name


async def test_a_frame_sent_again_is_counted_once(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    create = types.CreateBacktestSessionRequest(
        start_slot=10, end_slot=12, disconnect_timeout_secs=9
    )
    error = types.Error(backtest_errors.InvalidRequest("bad step"))
    async with open_recorder(db, create_params=create, server_url=None) as rec:
        await rec.record_sent(None, create)
        await rec.record_control(None, types.SessionCreated("s1", "/backtest/s1"))
        await rec.record_control(None, types.SlotNotification(10), seq_id=1)  # id not yet known
        await rec.record_control("s1", error, seq_id=2)
        await rec.record_sent("s1", types.AttachBacktestSession("s1", 1))
        await rec.record_control("s1", error, seq_id=2)  # the server sent it again
        await rec.record_control("s1", types.SessionAttached("s1", "/backtest/s1"))
        await rec.record_control("s1", types.SlotNotification(11), seq_id=3)
        await rec.record_control("s1", types.Completed(), seq_id=4)
    summary = load_recorded_run(db, rec.run_id).summary
    assert summary is not None
    [session] = summary["sessions"]
    assert (session["session_id"], session["status"], session["errors"]) == ("s1", "completed", 1)


def test_compare_a_recording_with_its_ndjson(
    recorded: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, out, run_id = recorded
    assert main(["compare", str(out), f"{db}:{run_id}", "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["regression"] is False
    assert result["regressions"] == result["improvements"] == result["balances"] == []
    assert result["summary"]["only_in_baseline"] == result["summary"]["only_in_experiment"] == 0
    assert main(["compare", str(out), f"{db}:no-such-run"]) == 2


def test_verify_detects_tampering(
    recorded: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _, run_id = recorded
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET ts_ns = ts_ns + 1 WHERE run_id = ? AND seq = 5", (run_id,))
    conn.close()
    assert main(["runs", "verify", str(db), "--json"]) == 1
    [result] = _last_json(capsys.readouterr().out)
    assert result["intact"] is False
    assert result["bad_seq"] == 5


def test_single_session_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "runs.db"
    argv = ["run", "--embedded", "--start-slot", "10", "--end-slot", "39", "--no-parallel"]
    argv.append("--json")
    assert main([*argv, "--record", str(db)]) == 0
    run_id = _last_json(capsys.readouterr().out)["run_id"]
    assert main(["runs", "show", str(db), run_id, "--json"]) == 0
    summary = _last_json(capsys.readouterr().out)["summary"]
    assert [(s["start_slot"], s["end_slot"], s["status"]) for s in summary["sessions"]] == [
        (10, 39, "completed")
    ]
    assert summary["totals"]["slots"] == 30
    # Nothing was subscribed to: those counters are not tracked, not zero (as `run` shows them).
    assert summary["totals"]["transactions"] is None
    assert summary["totals"]["account_diffs"] is None


def test_missing_store_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing run is unreadable input: exit 2 from every command that reads it."""
    assert main(["runs", "list", str(tmp_path / "none.db")]) == 2
    assert "simtrio runs list: error:" in capsys.readouterr().err
    db = tmp_path / "runs.db"
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "5", "--record", str(db)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["runs", "show", str(db), "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["compare", f"{db}:nope", f"{db}:nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["summarize", f"{db}:nope"]) == 2
    assert main(["replay", str(db), "nope"]) == 2
    assert "nope" in capsys.readouterr().err


async def test_replay_serves_the_recorded_run_to_the_same_strategy(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    base = RunOptions(
        target=Target(None, ""), start_slot=0, end_slot=149, subscribe=("transactions",), step=3
    )
    with trio.fail_after(10):
        original = await execute_run(attrs.evolve(base, record=db))
    assert original.run_id is not None
    assert exit_status(original) == 0
    out = io.StringIO()
    divergences: list[str] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                replay_forever, db, original.run_id, "127.0.0.1", 0, out, divergences
            )
            assert out.getvalue() == f"{server.control_url}\n"
            target = Target(server.control_url, "")
            again = await execute_run(
                attrs.evolve(base, target=target, program_ids=DEFAULT_PROGRAM_IDS)
            )
            nursery.cancel_scope.cancel()
    assert divergences == []
    assert exit_status(again) == 0
    now = trio.current_time()
    for name in ("slots", "transactions", "failed_transactions", "correct", "sessions"):
        assert again.totals(now)[name] == original.totals(now)[name], name


async def test_replay_reports_a_diverging_client(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    base = RunOptions(target=Target(None, ""), start_slot=0, end_slot=119)
    with trio.fail_after(10):
        original = await execute_run(attrs.evolve(base, record=db))
    assert original.run_id is not None
    divergences: list[str] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                replay_forever, db, original.run_id, "127.0.0.1", 0, io.StringIO(), divergences
            )
            other = attrs.evolve(base, target=Target(server.control_url, ""), step=2)
            report = await execute_run(other)
            nursery.cancel_scope.cancel()
    assert exit_status(report) == 1
    assert divergences
    assert [t.state.value for t in report.sessions] == ["failed", "failed"]
    assert all((t.failure or "").startswith("server error:") for t in report.sessions)
    assert all(t.errors == 1 for t in report.sessions)


def test_replay_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["replay", "runs.db", "RID", "--port", "7001"])
    assert (str(args.db), args.run_id, args.port) == ("runs.db", "RID", 7001)
    assert main(["replay", str(tmp_path / "none.db"), "RID"]) == 2
    assert "no run store" in capsys.readouterr().err


async def test_replay_prints_a_working_recipe_and_serves_a_second_client(tmp_path: Path) -> None:
    """A run recorded with subscriptions replays with the printed command, twice in a row."""
    db = tmp_path / "runs.db"
    base = RunOptions(
        target=Target(None, ""),
        start_slot=0,
        end_slot=149,
        subscribe=("transactions", "account-diffs"),
        step=3,
    )
    with trio.fail_after(10):
        original = await execute_run(attrs.evolve(base, record=db))
    assert original.run_id is not None
    hint = io.StringIO()
    divergences: list[str] = []
    now = trio.current_time()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(
                    replay_forever,
                    db,
                    original.run_id,
                    "127.0.0.1",
                    0,
                    io.StringIO(),
                    divergences,
                    hint=hint,
                )
            )
            command = hint.getvalue().split("repeat the run with: ", 1)[1].split()
            assert command[:4] == ["simtrio", "run", "--url", server.control_url]
            opts = options_from_args(build_parser().parse_args(command[1:]), env={})
            for _ in range(2):  # the second client gets the run from the start
                again = await execute_run(opts)
                assert exit_status(again) == 0, again.error
                for name in ("slots", "transactions", "account_diffs", "correct", "sessions"):
                    assert again.totals(now)[name] == original.totals(now)[name], name
            nursery.cancel_scope.cancel()
    assert divergences == []


def test_summarize_a_recording(
    recorded: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, out, run_id = recorded
    assert main(["summarize", f"{db}:{run_id}", "--json"]) == 0
    from_recording = _last_json(capsys.readouterr().out)
    assert main(["summarize", str(out), "--json"]) == 0
    from_file = _last_json(capsys.readouterr().out)
    assert from_recording["format"] == "recording"
    assert from_file["format"] == "sim"
    for name in ("start_slot", "end_slot", "total", "successes", "failures"):
        assert from_recording[name] == from_file[name], name
