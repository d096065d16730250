"""Tables, the progress display and the tallies behind the summary."""

from __future__ import annotations

import io

import trio
from trio.testing import MockClock

from simtrio.cli.output import format_duration, render_table
from simtrio.cli.progress import ProgressBar, bar
from simtrio.cli.report import RunReport, SessionState, SessionTally, render_summary, tx_facts
from simtrio.wire.types import SessionSummary


def test_render_table_aligns_numbers_right() -> None:
    text = render_table(("NAME", "N"), [["a", 1], ["bbb", 100]], footer=[["TOTAL", 101]])
    assert text.splitlines() == [
        "NAME     N",
        "a        1",
        "bbb    100",
        "-----  ---",
        "TOTAL  101",
    ]


def test_format_duration() -> None:
    assert format_duration(0.5) == "0.50s"
    assert format_duration(12.34) == "12.3s"
    assert format_duration(245) == "4m05s"


def test_tx_facts_reads_signature_and_outcome() -> None:
    ok = {"transaction": {"signatures": ["S1"]}, "meta": {"err": None}}
    failed = {"transaction": {"signatures": ["S2"]}, "meta": {"err": {"InstructionError": [0]}}}
    wrapped = {"context": {"slot": 3}, "value": failed}
    assert tx_facts(ok).signature == "S1"
    assert tx_facts(ok).success
    assert not tx_facts(failed).success
    assert tx_facts(wrapped).signature == "S2"
    assert tx_facts(None).signature is None


def test_tally_dedups_and_counts_slots() -> None:
    t = SessionTally("s", 100, 109, started_at=0.0)
    assert (t.total_slots, t.slots_done) == (10, 0)
    t.on_slot(100)
    assert t.slots_done == 0
    t.on_slot(104)
    t.on_slot(103)  # a replayed slot never moves progress back
    assert t.slots_done == 4
    ok = tx_facts({"transaction": {"signatures": ["A"]}, "meta": {"err": None}})
    bad = tx_facts({"transaction": {"signatures": ["B"]}, "meta": {"err": "x"}})
    assert t.on_transaction(ok)
    assert not t.on_transaction(ok)
    assert t.on_transaction(bad)
    assert (t.transactions, t.tx_failed) == (2, 1)
    assert t.on_account_diff("acc", "A", 101)
    assert not t.on_account_diff("acc", "A", 101)
    t.complete(SessionSummary(correct_simulation=2), now=2.0)
    assert t.slots_done == 10
    assert t.state is SessionState.COMPLETED
    t.fail("late", now=3.0)  # a finished session stays finished
    assert t.state is SessionState.COMPLETED


def test_summary_lists_failures() -> None:
    report = RunReport(
        url="ws://x/backtest", parallel=True, start_slot=0, end_slot=199, started_at=0
    )
    good = SessionTally("backtest_a", 0, 99, started_at=0)
    good.complete(SessionSummary(correct_simulation=7, incorrect_simulation=1), now=1.0)
    bad = SessionTally("backtest_b", 100, 199, started_at=0)
    bad.on_slot(150)
    bad.fail("SubscriptionFailed: gave up", now=1.5)
    report.sessions.extend([good, bad])
    report.finished_at = 2.0
    data = report.to_json(2.0)
    assert data["status"] == "failed"
    assert data["totals"]["slots"] == 150
    assert data["totals"]["correct"] == 7
    assert data["totals"]["failed_sessions"] == 1
    text = render_summary(data)
    assert "backtest_b (100-199): SubscriptionFailed: gave up" in text
    total = next(line for line in text.splitlines() if line.startswith("TOTAL"))
    assert "150/200" in total


def test_progress_bar_draws_in_place_and_clears() -> None:
    out = io.StringIO()
    tallies = [SessionTally(f"backtest_{i}", i * 10, i * 10 + 9, started_at=0.0) for i in range(3)]
    progress = ProgressBar(out, lambda: tallies, 30, width=80)
    progress.draw(1.0, 0.0)
    first = out.getvalue()
    assert first.count("\n") == 4  # three sessions + total
    assert "0/30" in first
    progress.draw(1.0, 0.0)
    assert out.getvalue() == first  # nothing changed: nothing written
    tallies[0].on_slot(5)
    progress.draw(2.0, 0.0)
    frame = out.getvalue()[len(first) :]
    assert frame.startswith("\x1b[4F")  # back to the top of the previous frame
    assert "5/10" in frame
    assert "5/30" in frame
    progress.clear()
    assert out.getvalue().endswith("\x1b[4F\x1b[J")


def test_progress_bar_caps_lines_for_large_runs() -> None:
    tallies = [SessionTally(f"s{i}", i * 10, i * 10 + 9, started_at=0.0) for i in range(50)]
    tallies[0].complete(None, now=1.0)
    lines = ProgressBar(io.StringIO(), lambda: tallies, 500, max_lines=8, width=100).lines(1, 0)
    assert len(lines) == 10
    assert "42 more (1 finished)" in lines[-2]
    assert all(len(line) < 100 for line in lines)
    assert bar(5, 10, 10) == "[#####.....]"


def test_progress_run_redraws_until_cancelled() -> None:
    out = io.StringIO()
    tally = SessionTally("s", 0, 9, started_at=0.0)

    async def body() -> None:
        with trio.move_on_after(0.35):
            await ProgressBar(out, lambda: [tally], 10, width=60).run(0.0, interval=0.1)

    trio.run(body, clock=MockClock(autojump_threshold=0))
    assert "0/10" in out.getvalue()
    assert out.getvalue().endswith("\x1b[J")


def test_progress_message_prints_above_the_display() -> None:
    out = io.StringIO()
    tally = SessionTally("s", 0, 9, started_at=0.0)
    progress = ProgressBar(out, lambda: [tally], 10, width=60)
    progress.draw(1.0, 0.0)
    progress.message("hello")
    assert out.getvalue().endswith("\x1b[2F\x1b[Jhello\n")
    progress.draw(1.0, 0.0)  # drawn again below the message
    assert out.getvalue().count("total") == 2
