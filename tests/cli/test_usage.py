"""Argument handling: usage errors exit 2 before any I/O; targets resolve as documented."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage" in err.lower()


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
    opts = options_from_args(_run_args("--start-slot", "100", "--slot-count", "20"), env={})
    assert (opts.start_slot, opts.end_slot) == (100, 120)
    assert opts.create().send_summary is True
    assert opts.create().disconnect_timeout_secs == 60
    assert opts.create().parallel is True


def test_subscribe_lists_are_merged_and_program_ids_imply_transactions() -> None:
    opts = options_from_args(
        _run_args(
            "--start-slot", "0", "--end-slot", "1",
            "--subscribe", "transactions,account-diffs", "--subscribe", "transactions",
        ),
        env={},
    )  # fmt: skip
    assert opts.subscribe == ("transactions", "account-diffs")
    opts = options_from_args(
        _run_args(
            "--start-slot", "0", "--end-slot", "1", "--program-id", "A,B", "--program-id", "A"
        ),
        env={},
    )
    assert opts.subscribe == ("transactions",)
    assert opts.program_ids == ("A", "B")


def test_remote_subscriptions_need_program_ids() -> None:
    args = _run_args("--start-slot", "0", "--end-slot", "1", "--subscribe", "transactions")
    with pytest.raises(UsageError, match="--program-id"):
        options_from_args(args, env={"SIMULATOR_URL": "ws://sim.example"})
    assert options_from_args(args, env={}).target.embedded


def test_target_resolution() -> None:
    parser = build_parser()
    args = parser.parse_args(["ranges"])
    assert resolve_target(args, env={}) == Target(None, "")
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
