"""Tables, the progress display and the tallies behind the summary."""

from __future__ import annotations

import io
import logging

import trio
from rich.console import Console
from trio.testing import MockClock

from simtrio.cli.console import configure_logging, render_table, reset_logging, stderr_console
from simtrio.cli.output import format_duration
from simtrio.cli.progress import RunProgress
from simtrio.cli.report import RunReport, SessionState, SessionTally, render_summary, tx_facts
from simtrio.wire.types import SessionSummary


def test_render_table_aligns_numbers_right() -> None:
    text = render_table(("NAME", "N"), [["a", 1], ["bbb", 100]], footer=[["TOTAL", 101]])
    assert text.splitlines() == [
        "NAME     N",
        "a        1",
        "bbb    100",
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
    assert "backtest_a" not in text  # one line per sub-session only with -v
    assert "150/200" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    detailed = render_summary(data, detailed=True)
    total = next(line for line in detailed.splitlines() if line.startswith("TOTAL"))
    assert "150/200" in total
    assert any(line.startswith("backtest_a") for line in detailed.splitlines())


def _terminal(width: int = 100) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=width, color_system=None), out


def test_progress_shows_eta_and_one_line_per_sub_session() -> None:
    console, out = _terminal()
    tallies = [SessionTally(f"backtest_{i}", i * 10, i * 10 + 9, started_at=0.0) for i in range(3)]

    async def body() -> None:
        progress = RunProgress(console, lambda: tallies, 30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.run)
            await trio.sleep(1)
            tallies[0].on_slot(5)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()

    trio.run(body, clock=MockClock(autojump_threshold=0))
    text = out.getvalue()
    assert "ETA" in text
    assert "5/30" in text  # the total
    for t in tallies:
        assert f"{t.start_slot}-{t.end_slot}" in text
    assert "5/10" in text


def test_progress_caps_lines_for_large_runs() -> None:
    console, _ = _terminal()
    tallies = [SessionTally(f"s{i}", i * 10, i * 10 + 9, started_at=0.0) for i in range(50)]
    tallies[0].complete(None, now=1.0)
    progress = RunProgress(console, lambda: tallies, 500, max_lines=8)
    progress.update()
    visible = [task for task in progress.progress.tasks if task.visible]
    assert len(visible) == 9  # the total and eight running sub-sessions
    assert "42 more" in visible[0].description


def test_log_records_print_above_the_live_display() -> None:
    """A warning during the run goes through the display's console, not over the bar."""
    console, out = _terminal()
    configure_logging(0, console)
    tally = SessionTally("s", 0, 9, started_at=0.0)
    log = logging.getLogger("simtrio.managed.test")

    async def body() -> None:
        progress = RunProgress(console, lambda: [tally], 10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.run)
            for i in range(10):
                await trio.sleep(0.25)
                log.warning("connection lost %d", i)
            nursery.cancel_scope.cancel()

    try:
        trio.run(body, clock=MockClock(autojump_threshold=0))
    finally:
        reset_logging()
    text = out.getvalue()
    for i in range(10):
        at = text.index(f"connection lost {i}")
        # The live display was erased (cursor moved up over it) before the line was printed.
        assert "\x1b[2K" in text[max(0, at - 200) : at]
    assert text.count("connection lost 3") == 1


def test_plain_console_when_not_a_terminal() -> None:
    out = io.StringIO()
    console = stderr_console(out)
    assert not console.is_terminal
    configure_logging(0, console)
    try:
        logging.getLogger("simtrio.x").warning("plain line")
    finally:
        reset_logging()
    assert "\x1b" not in out.getvalue()
    assert "WARNING simtrio.x: plain line" in out.getvalue()


def test_tables_fit_the_width_they_are_given() -> None:
    rows = [["x" * 60, 1, "y" * 50]]
    text = render_table(("A", "N", "B"), rows, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    wide = render_table(("A", "N", "B"), rows)  # not a terminal: natural width, nothing folded
    assert len(wide.splitlines()) == 2
