"""Argument handling: usage errors exit 2 before any I/O; targets resolve as documented."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from simtrio.cli.common import Target, UsageError, display_url, resolve_target
from simtrio.cli.main import build_parser, main
from simtrio.cli.run import options_from_args

if TYPE_CHECKING:
    import argparse


def _run_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--end-slot", "5"],  # no start
        ["run", "--start-slot", "1"],  # neither end nor count
        ["run", "--start-slot", "1", "--end-slot", "5", "--slot-count", "2"],
        ["run", "--start-slot", "9", "--end-slot", "5"],
        ["run", "--start-slot", "-1", "--end-slot", "5"],
        ["run", "--start-slot", "1", "--slot-count", "-3"],
        ["run", "--start-slot", "x", "--end-slot", "5"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--step", "0"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--disconnect-timeout", "901"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--subscribe", "blocks"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--embedded", "--url", "ws://h"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--url", "ws://h", "--subscribe", "txs"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--bogus"],
        ["runs"],
        ["compare", "only-one.ndjson"],
        ["serve", "--port", "70000"],
        ["run", "--start-slot", "99999999999999999999", "--slot-count", "3", "--embedded"],
        ["run", "--start-slot", "18446744073709551615", "--slot-count", "3", "--embedded"],
        ["run", "--start-slot", "1", "--end-slot", "5"],  # no server: no silent embedded run
        ["run", "--start-slot", "1", "--end-slot", "5", "--url", "not a url"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--url", "http://h.example"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--embedded", "--subscriptions", "x"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--embedded", "--format", "csv"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--extra-compute-units", "-1"],
        ["ranges"],
        ["compare", "a", "b", "nonsense-section"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--embedded", "--program-so", "x.so"],
        ["run", "--start-slot", "1", "--end-slot", "5", "--embedded", "--program-id", "not-b58!"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Every user error is one line on stderr, exit 2, never a traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err.lower()


def test_forgotten_url_is_a_usage_error_not_an_embedded_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--start-slot", "1000", "--slot-count", "10"]) == 2
    captured = capsys.readouterr()
    assert "--url" in captured.err
    assert "--embedded" in captured.err
    assert "embedded reference server at" not in captured.err
    assert captured.out == ""


def test_an_unexpected_failure_is_one_line_without_v(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import simtrio.cli.main as main_module

    def boom(args: argparse.Namespace) -> int:
        raise ExceptionGroup("outer", [ValueError("the real cause")])

    commands = [
        attrs.evolve(entry, command=boom) if entry.INFO.name == "run" else entry
        for entry in main_module.COMMANDS
    ]
    monkeypatch.setattr(main_module, "COMMANDS", commands)
    argv = ["run", "--embedded", "--start-slot", "1", "--end-slot", "2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "simtrio: internal error: ValueError: the real cause (run with -v for the traceback)"
    ]


def test_usage_error_names_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--start-slot", "9", "--end-slot", "5"]) == 2
    err = capsys.readouterr().err
    assert "simtrio run: error: --end-slot must not be below --start-slot" in err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "run" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("simtrio ")


def test_slot_count_means_end_is_start_plus_count() -> None:
    args = _run_args("--start-slot", "100", "--slot-count", "20", "--embedded")
    opts = options_from_args(args, env={})
    assert (opts.start_slot, opts.end_slot) == (100, 120)
    assert opts.create().send_summary is True
    assert opts.create().disconnect_timeout_secs == 60
    assert opts.create().parallel is True


def test_subscribe_lists_are_merged_and_program_ids_imply_transactions() -> None:
    opts = options_from_args(
        _run_args(
            "--start-slot", "0", "--end-slot", "1", "--embedded",
            "--subscribe", "transactions,account-diffs", "--subscriptions", "transactions",
        ),
        env={},
    )  # fmt: skip
    assert opts.subscribe == ("transactions", "account-diffs")
    a, b = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", "11111111111111111111111111111111"
    opts = options_from_args(
        _run_args("--start-slot", "0", "--end-slot", "1", "--program-id", f"{a},{b}",
                  "--program-id", a),
        env={"SIMULATOR_URL": "ws://sim.example"},
    )  # fmt: skip
    assert opts.subscribe == ("transactions",)
    assert opts.program_ids == (a, b)


def test_remote_subscriptions_need_program_ids() -> None:
    args = _run_args("--start-slot", "0", "--end-slot", "1", "--subscribe", "transactions")
    with pytest.raises(UsageError, match="--program-id"):
        options_from_args(args, env={"SIMULATOR_URL": "ws://sim.example"})
    embedded = _run_args("--start-slot", "0", "--end-slot", "1", "--subscribe", "account-diff")
    embedded.embedded = True
    assert options_from_args(embedded, env={}).subscribe == ("account-diffs",)


def test_sim_flags_are_accepted() -> None:
    args = _run_args(
        "--start-slot", "0", "--end-slot", "1", "--embedded", "--extra-compute-units", "5000",
        "--subscriptions", "account-diff,transactions", "--output-file", "x.ndjson",
    )  # fmt: skip
    opts = options_from_args(args, env={})
    assert opts.create().extra_compute_units == 5000
    assert opts.subscribe == ("account-diffs", "transactions")
    assert str(opts.output) == "x.ndjson"
    assert opts.output_format == "sim"


def test_target_resolution() -> None:
    parser = build_parser()
    args = parser.parse_args(["ranges"])
    with pytest.raises(UsageError, match="no server given"):
        resolve_target(args, env={})
    env = {"SIMULATOR_URL": "sim.example.net", "SIMULATOR_API_KEY": "k-env"}
    target = resolve_target(args, env=env)
    assert target.url == "wss://sim.example.net/backtest"
    assert target.api_key == "k-env"
    assert "k-env" not in repr(target)
    args = parser.parse_args(["ranges", "--url", "ws://127.0.0.1:9/", "--api-key", "k-arg"])
    assert resolve_target(args, env=env) == Target("ws://127.0.0.1:9/backtest", "k-arg")
    args = parser.parse_args(["ranges", "--embedded"])
    assert resolve_target(args, env=env).embedded


def test_display_url_hides_credentials() -> None:
    assert display_url("wss://user:pw@h.example:8443/backtest?key=k#f") == (
        "wss://h.example:8443/backtest"
    )
    assert display_url("ws://127.0.0.1:7000/backtest") == "ws://127.0.0.1:7000/backtest"


@pytest.mark.parametrize(
    ("argv", "verbosity"),
    [
        (["run", "--start-slot", "1", "--slot-count", "2"], 0),
        (["-v", "run", "--start-slot", "1", "--slot-count", "2"], 1),
        (["run", "-v", "--start-slot", "1", "--slot-count", "2"], 1),
        (["-v", "run", "-vv", "--start-slot", "1", "--slot-count", "2"], 2),
        (["runs", "list", "-vv", "runs.db"], 2),
        (["-v", "runs", "list", "runs.db"], 1),
    ],
)
def test_verbose_goes_before_or_after_the_command(argv: list[str], verbosity: int) -> None:
    assert build_parser().parse_args(argv).verbose == verbosity


def test_logs_are_refused_rather_than_silently_ignored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import simtrio.cli.run as run_module

    monkeypatch.setattr(run_module, "LOGS_AVAILABLE", False)
    argv = ["run", "--embedded", "--start-slot", "1", "--end-slot", "5", "--subscriptions", "logs"]
    assert main(argv) == 2
    assert "logs" in capsys.readouterr().err
