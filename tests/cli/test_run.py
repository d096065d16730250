"""``simtrio run`` against the embedded reference server, in-process.

``main()`` calls ``trio.run`` itself, so the tests that go through it are plain sync tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
from typing import TYPE_CHECKING, Any

import pytest
import trio
from rich.console import Console

from simtrio.cli.common import Interrupt, Target
from simtrio.cli.driver import RunOptions, execute_run
from simtrio.cli.main import main
from simtrio.cli.report import RunReport, render_summary
from simtrio.cli.run import exit_status
from simtrio.server import FaultPlan, Faults, ServerConfig, serve
from simtrio.server.chain import slot_transactions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path


KEY = "sekret-api-key-123"
SLOW = ServerConfig(slot_delay=0.001)


# Each case runs once over parallel sub-sessions and once over a single session.
EITHER_SHAPE = pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "single"])


def _last_json(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return value


def _chain_counts(start: int, end: int) -> tuple[int, int]:
    """(transactions, failed transactions) the default reference chain has in the range."""
    cfg = ServerConfig().chain
    txs = [tx for slot in range(start, end + 1) for tx in slot_transactions(cfg, slot)]
    return len(txs), sum(1 for tx in txs if not tx.success)


def _wrap_session_opener(
    monkeypatch: pytest.MonkeyPatch, parallel: bool, wrap: Callable[[Any], Any]
) -> None:
    """Replace the managed opener the run uses with ``wrap(original)``."""
    import simtrio.managed.parallel
    import simtrio.managed.session

    module = simtrio.managed.parallel if parallel else simtrio.managed.session
    name = "open_parallel_session" if parallel else "open_managed_session"
    monkeypatch.setattr(module, name, wrap(getattr(module, name)))


def _wrap_recorder_opener(monkeypatch: pytest.MonkeyPatch, wrap: Callable[[Any], Any]) -> None:
    import simtrio.recording.recorder

    recorder = simtrio.recording.recorder
    monkeypatch.setattr(recorder, "open_recorder", wrap(recorder.open_recorder))


def _around(
    *,
    before: Callable[[], Awaitable[object]] | None = None,
    leaving: Callable[[], Awaitable[object]] | None = None,
    after: Callable[[], Awaitable[object]] | None = None,
) -> Callable[[Any], Any]:
    """A ``wrap`` for the opener helpers above: the original opener, with ``before`` run before
    it is entered, ``leaving`` once the body is done (still inside it) and ``after`` once it
    has been left."""

    def wrap(original: Any) -> Any:
        @contextlib.asynccontextmanager
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                await before()
            async with original(*args, **kwargs) as value:
                yield value
                if leaving is not None:
                    await leaving()
            if after is not None:
                await after()

        return wrapped

    return wrap


def _signal(interrupt: Interrupt) -> Callable[[], Awaitable[None]]:
    """A hook for :func:`_around`: one SIGINT, as if it arrived at that point."""

    async def hook() -> None:
        interrupt.trigger()

    return hook


def _recorded(db: Path) -> tuple[str, str | None]:
    """The status and outcome of the one run ``db`` holds."""
    from simtrio.recording import list_runs

    (run,) = list_runs(db)
    return run.status.value, run.outcome


async def _run_recorded(
    tmp_path: Path, interrupt: Interrupt, *, end_slot: int, parallel: bool = True
) -> tuple[RunReport, Path]:
    """A recorded run on the embedded server, bounded in time."""
    db = tmp_path / "runs.db"
    opts = RunOptions(
        target=Target(None, ""), start_slot=0, end_slot=end_slot, parallel=parallel, record=db
    )
    with trio.fail_after(10):
        report = await execute_run(opts, interrupt=interrupt)
    return report, db


def test_parallel_run_prints_a_consistent_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--embedded", "--start-slot", "0", "--end-slot", "249", "-v"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].split() == ["status", "completed"]
    lines = captured.out.split("\n\n")[1].splitlines()  # -v: the table after the overview
    assert lines[0].split()[:3] == ["SESSION", "RANGE", "SLOTS"]
    rows = [line.split() for line in lines[1:] if line.startswith("backtest_")]
    assert [(r[1], r[2]) for r in rows] == [("0-99", "100/100"), ("100-199", "100/100"),
                                            ("200-249", "50/50")]  # fmt: skip
    total = next(line.split() for line in lines if line.startswith("TOTAL"))
    assert total[1:3] == ["0-249", "250/250"]
    assert total[-1] == "completed"
    expected_txs, _ = _chain_counts(0, 249)
    assert int(total[6]) == expected_txs  # CORRECT: every executed transaction
    assert "embedded reference server" in captured.err


def test_json_summary_on_the_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "run",
                "--embedded",
                "--start-slot",
                "100",
                "--slot-count",
                "119",
                "--json",
                "--step",
                "7",
            ]
        )
        == 0
    )
    summary = _last_json(capsys.readouterr().out)
    assert summary["status"] == "completed"
    assert summary["ok"] is True
    totals = summary["totals"]
    assert totals["slots"] == totals["total_slots"] == 120
    assert totals["sessions"] == 2
    assert totals["failed_sessions"] == 0
    expected_txs, _ = _chain_counts(100, 219)
    assert totals["correct"] == totals["summary_transactions"] == expected_txs
    assert totals["incorrect"] == totals["execution_errors"] == totals["errors"] == 0
    ranges = [(s["start_slot"], s["end_slot"]) for s in summary["sessions"]]
    assert ranges == [(100, 199), (200, 219)]


def test_single_session_with_no_parallel(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "run",
                "--embedded",
                "--start-slot",
                "0",
                "--end-slot",
                "149",
                "--no-parallel",
                "--json",
            ]
        )
        == 0
    )
    summary = _last_json(capsys.readouterr().out)
    assert summary["parallel"] is False
    assert len(summary["sessions"]) == 1
    session = summary["sessions"][0]
    assert (session["start_slot"], session["end_slot"], session["slots"]) == (0, 149, 150)
    assert session["status"] == "completed"
    assert session["correct"] == _chain_counts(0, 149)[0]


def test_subscriptions_count_every_transaction_once(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "129", "--json"]
    assert main([*argv, "--subscribe", "transactions,account-diffs"]) == 0
    totals = _last_json(capsys.readouterr().out)["totals"]
    expected_txs, expected_failed = _chain_counts(0, 129)
    # Every synthetic transaction involves one of the default programs, subscribed to here.
    assert totals["transactions"] == totals["summary_transactions"] == expected_txs
    assert totals["failed_transactions"] == expected_failed
    assert totals["account_diffs"] > 0


def test_output_ndjson_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.ndjson"
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "109", "--api-key", KEY]
    argv += ["--output", str(out), "--format", "simtrio"]
    assert main([*argv, "--subscribe", "transactions,account-diffs"]) == 0
    captured = capsys.readouterr()
    text = out.read_text()
    assert KEY not in text
    assert KEY not in captured.out
    assert KEY not in captured.err
    records = [json.loads(line) for line in text.splitlines()]
    meta, *body, summary = records
    assert meta["type"] == "metadata"
    assert (meta["start_slot"], meta["end_slot"]) == (0, 109)
    assert meta["send_summary"] is True
    assert meta["parallel"] is True
    assert meta["url"].startswith("ws://127.0.0.1:")
    assert "started_at" in meta
    assert summary["type"] == "summary"
    assert summary["totals"]["slots"] == 110
    txs = [r for r in body if r["type"] == "transaction"]
    diffs = [r for r in body if r["type"] == "accountDiff"]
    assert {r["type"] for r in body} == {"transaction", "accountDiff"}
    assert len(txs) == summary["totals"]["transactions"] == _chain_counts(0, 109)[0]
    assert len({t["signature"] for t in txs}) == len(txs)
    assert all(isinstance(t["success"], bool) and 0 <= t["slot"] <= 109 for t in txs)
    session_ids = {s["session_id"] for s in summary["sessions"]}
    assert {t["session_id"] for t in txs} <= session_ids
    assert all(d["account"] and d["signature"] for d in diffs)


def test_identical_runs_compare_clean_and_a_different_chain_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [tmp_path / f"{name}.ndjson" for name in ("a", "b", "c")]
    base = ["run", "--embedded", "--start-slot", "0", "--end-slot", "99"]
    base += ["--subscribe", "transactions"]
    assert main([*base, "--output", str(paths[0])]) == 0
    assert main([*base, "--output", str(paths[1])]) == 0
    assert main([*base, "--output", str(paths[2]), "--seed", "5"]) == 0
    capsys.readouterr()
    assert main(["compare", str(paths[0]), str(paths[1]), "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["regressions"] == result["improvements"] == result["balances"] == []
    assert result["summary"]["only_in_baseline"] == result["summary"]["only_in_experiment"] == 0
    main(["compare", str(paths[0]), str(paths[2]), "--json"])
    other = _last_json(capsys.readouterr().out)
    # Another chain: different signatures throughout.
    assert other["summary"]["only_in_baseline"] > 0


def test_unreachable_url_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["run", "--start-slot", "0", "--end-slot", "9", "--url", f"ws://127.0.0.1:{port}"]
    status = main([*argv, "--api-key", KEY, "--reconnect-max-total", "0.3"])
    assert status == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran: no summary of zeros
    lines = [line for line in captured.err.splitlines() if "simtrio run: error:" in line]
    assert len(lines) == 1
    assert "CreateFailed" in lines[0]
    assert KEY not in captured.out + captured.err
    status = main([*argv, "--reconnect-max-total", "0.3", "--json"])
    summary = _last_json(capsys.readouterr().out)
    assert status == 1
    assert summary["status"] == "failed"
    assert summary["error"].startswith("CreateFailed")


async def test_a_failed_sub_session_is_reported_and_the_others_finish() -> None:
    # The first data-plane upgrade is refused with 403 (fatal): that sub-session's
    # subscription gives up; its siblings complete.
    plan = FaultPlan(data_connections={1: Faults(reject_upgrade=403)})
    opts = RunOptions(
        target=Target(None, ""),
        start_slot=0,
        end_slot=299,
        subscribe=("transactions",),
    )
    with trio.fail_after(10):
        report = await execute_run(opts, server_config=ServerConfig(faults=plan))
    assert exit_status(report) == 1
    states = sorted(t.state.value for t in report.sessions)
    assert states == ["completed", "completed", "failed"]
    failed = next(t for t in report.sessions if t.failure is not None)
    assert "subscription gave up" in (failed.failure or "")
    assert "403" in (failed.failure or "")
    text = render_summary(report.to_json(trio.current_time()))
    assert f"{failed.session_id} ({failed.start_slot}-{failed.end_slot}):" in text
    assert "3 sub-sessions:" in text


async def test_interrupt_leaves_the_session_block_and_closes_it() -> None:
    async with serve(slot_delay=0.001) as server:
        opts = RunOptions(
            target=Target(server.control_url, ""), start_slot=0, end_slot=99_999, parallel=False
        )
        interrupt = Interrupt()

        async def stop_soon() -> None:
            # The server's state has no event to wait on: poll it.
            while not server.sessions or next(iter(server.sessions.values())).slot < 5:  # noqa: ASYNC110
                await trio.sleep(0.01)
            interrupt.trigger()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_soon)
                report = await execute_run(opts, interrupt=interrupt)
        assert report.interrupted
        assert exit_status(report) == 130
        assert [t.state.value for t in report.sessions] == ["interrupted"]
        assert 0 < report.sessions[0].slots_done < 100_000
        with trio.fail_after(2):
            while server.sessions:  # noqa: ASYNC110 - the close makes the server drop it
                await trio.sleep(0.01)


async def test_progress_display_and_notice_share_the_console() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, color_system=None)
    opts = RunOptions(target=Target(None, ""), start_slot=0, end_slot=149)
    with trio.fail_after(10):
        report = await execute_run(opts, console=console, server_config=SLOW)
    assert exit_status(report) == 0
    text = stream.getvalue()
    assert "simtrio: embedded reference server at ws://" in text
    assert "total" in text
    assert "ETA" in text


def test_record_into_a_missing_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "missing" / "runs.db"
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "9", "--record", str(db)]
    assert main(argv) == 2
    assert "--record" in capsys.readouterr().err


def test_a_create_the_server_refuses_as_invalid_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(opts: RunOptions, **kwargs: Any) -> RunReport:
        report = RunReport(url="ws://x", parallel=True, start_slot=0, end_slot=9, started_at=0)
        report.error = (
            "CreateFailed: server error: InvalidRequest(error='the range has 100000000001 "
            "slots; this server allows at most 1000000 per create')"
        )
        report.finished_at = 0
        return report

    import simtrio.cli.run as run_module

    monkeypatch.setattr(run_module, "execute_run", refused)
    argv = ["run", "--embedded", "--start-slot", "1000", "--slot-count", "100000000000"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err.strip()
        .splitlines()[-1]
        .startswith("simtrio run: error: CreateFailed: server error: InvalidRequest(")
    )


@EITHER_SHAPE
async def test_a_signal_during_the_create_ends_the_recording_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    interrupt = Interrupt()

    # As if SIGINT arrived while the session is being created.
    _wrap_session_opener(monkeypatch, parallel, _around(before=_signal(interrupt)))
    report, db = await _run_recorded(tmp_path, interrupt, end_slot=999, parallel=parallel)
    assert report.interrupted
    assert exit_status(report, interrupt) == 130
    assert _recorded(db) == ("ENDED", "cancelled")


@EITHER_SHAPE
async def test_a_session_failing_while_it_is_stopped_ends_the_recording_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    """Stopped by a signal while driving, a session that fails on its way out (here: its
    control task reports a failure when it is left) must not turn the recording into an
    error: the run was stopped as asked."""
    from simtrio.errors import ControlFailed

    interrupt = Interrupt()

    def wrap(original: Any) -> Any:
        @contextlib.asynccontextmanager
        async def failing_on_the_way_out(*args: Any, **kwargs: Any) -> Any:
            try:
                async with original(*args, **kwargs) as session:
                    interrupt.trigger()  # as if SIGINT arrived once the session is up
                    yield session
            finally:
                # Whatever the stop raised inside, the session reports a failure on leaving.
                raise ControlFailed("connection lost while closing")

        return failing_on_the_way_out

    _wrap_session_opener(monkeypatch, parallel, wrap)
    report, db = await _run_recorded(tmp_path, interrupt, end_slot=999, parallel=parallel)
    assert report.interrupted
    assert report.status == "interrupted"
    assert report.error == "ControlFailed: connection lost while closing"
    assert exit_status(report, interrupt) == 130
    assert _recorded(db) == ("ENDED", "cancelled")


@EITHER_SHAPE
async def test_a_signal_during_session_teardown_keeps_a_finished_run_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    """Every session has completed when the signal arrives (the session block is being left):
    the run stays completed, and so does its recording."""
    interrupt = Interrupt()

    # As if SIGINT arrived as the finished session is closed.
    _wrap_session_opener(monkeypatch, parallel, _around(leaving=_signal(interrupt)))
    report, db = await _run_recorded(tmp_path, interrupt, end_slot=99, parallel=parallel)
    assert [t.state.value for t in report.sessions] == ["completed"] * len(report.sessions)
    assert not report.interrupted
    assert report.status == "completed"
    assert exit_status(report, interrupt) == 0
    assert _recorded(db) == ("ENDED", "completed")


async def test_a_signal_after_the_recording_ended_keeps_the_run_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recording has ended completed when the signal arrives (the embedded server is being
    stopped): the summary and the exit status must not say otherwise."""
    interrupt = Interrupt()

    # As if SIGINT arrived once the recording has ended.
    _wrap_recorder_opener(monkeypatch, _around(after=_signal(interrupt)))
    report, db = await _run_recorded(tmp_path, interrupt, end_slot=99)
    assert _recorded(db) == ("ENDED", "completed")
    assert report.status == "completed"
    assert exit_status(report, interrupt) == 0


async def test_a_second_signal_during_teardown_stops_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a finished run, the first signal is absorbed; a second one still stops everything
    and the run (and a recording still open) then says interrupted / cancelled."""
    interrupt = Interrupt()

    async def signalled_twice() -> None:
        interrupt.trigger(signal.SIGTERM)
        interrupt.trigger(signal.SIGTERM)
        await trio.lowlevel.checkpoint()

    _wrap_session_opener(monkeypatch, False, _around(leaving=signalled_twice))
    report, db = await _run_recorded(tmp_path, interrupt, end_slot=99, parallel=False)
    assert report.interrupted
    assert exit_status(report, interrupt) == 143
    assert _recorded(db) == ("ENDED", "cancelled")


async def test_a_signal_after_every_session_finished_cancels_nothing() -> None:
    interrupt = Interrupt()
    interrupt.settle()
    interrupt.trigger()
    assert not interrupt.requested
    assert not interrupt.hard.cancel_called
    interrupt.trigger()
    assert interrupt.requested
    assert interrupt.hard.cancel_called


async def test_a_signal_before_the_recording_starts_leaves_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped before the store is opened, the run never created a session: the store gets
    no run, and the summary says interrupted with no sessions."""
    interrupt = Interrupt()

    # As if SIGINT arrived just before the store is opened.
    _wrap_recorder_opener(monkeypatch, _around(before=_signal(interrupt)))
    report, db = await _run_recorded(tmp_path, interrupt, end_slot=99)
    assert report.interrupted
    assert report.sessions == []
    assert exit_status(report, interrupt) == 130
    assert not db.exists()  # the store was not even created
