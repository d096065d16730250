"""``simtrio serve`` / ``ranges`` / ``replay`` without running forever."""

from __future__ import annotations

import io
import json
import socket
from typing import TYPE_CHECKING

import pytest
import trio

from simtrio.cli.main import build_parser, main
from simtrio.cli.serve import config_from_args, serve_forever
from simtrio.client import BacktestClient

if TYPE_CHECKING:
    from pathlib import Path


async def test_serve_prints_its_url_and_stops_when_cancelled() -> None:
    args = build_parser().parse_args(["serve", "--seed", "3", "--api-key", "sekret"])
    config = config_from_args(args)
    assert config.seed == 3
    out = io.StringIO()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_forever, config, "127.0.0.1", 0, out)
            assert out.getvalue() == f"{server.control_url}\n"
            assert "sekret" not in out.getvalue()
            ranges = await BacktestClient(server.control_url, "sekret").available_ranges()
            assert ranges[0].bundle_start_slot == 0
            nursery.cancel_scope.cancel()


def test_serve_arguments() -> None:
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "7000"])
    assert (args.host, args.port) == ("0.0.0.0", 7000)
    assert config_from_args(args).api_key is None


def test_ranges_from_the_embedded_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ranges", "--embedded", "--json"]) == 0
    ranges = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert ranges[0]["bundle_start_slot"] == 0
    assert ranges[1]["max_bundle_end_slot"] == 199
    assert main(["ranges", "--embedded"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["BUNDLE-START", "MAX-END"]


def test_ranges_from_an_unreachable_url_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status = main(["ranges", "--url", f"ws://127.0.0.1:{port}", "--api-key", "sekret"])
    assert status == 1
    err = capsys.readouterr().err
    assert "simtrio ranges:" in err
    assert "sekret" not in err


def test_ranges_after_and_before_keep_the_overlapping_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The embedded chain's slot 0 is 2026-01-05T09:33:20Z and each 100-slot bundle lasts 40 s.
    argv = ["ranges", "--embedded", "--json"]
    assert main([*argv, "--after", "2026-01-05T09:34:10Z", "--before", "2026-01-05T09:35:00"]) == 0
    ranges = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [r["bundle_start_slot"] for r in ranges] == [100, 200]
    assert main([*argv, "--after", "2030-01-01"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []
    assert main([*argv, "--before", "2026-01-05"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--after", "yesterday"],
        ["--after", "2026-02-01", "--before", "2026-01-01"],
    ],
)
def test_ranges_bad_dates_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ranges", "--embedded", *argv]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_serve_takes_the_api_key_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMULATOR_API_KEY", "from-env")
    assert config_from_args(build_parser().parse_args(["serve"])).api_key == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n", encoding="utf-8")
    args = build_parser().parse_args(["serve", "--api-key-file", str(key_file)])
    config = config_from_args(args)
    assert config.api_key == "from-file"
    assert "from-file" not in repr(config)
    monkeypatch.delenv("SIMULATOR_API_KEY")
    assert config_from_args(build_parser().parse_args(["serve"])).api_key is None


def test_serve_refuses_an_unusable_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    assert main(["serve", "--api-key-file", str(empty)]) == 2
    assert "no key" in capsys.readouterr().err
    assert main(["serve", "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_serve_limits_and_id_mode() -> None:
    args = build_parser().parse_args(
        ["serve", "--max-connections", "10", "--max-sessions", "20", "--deterministic-ids"]
    )
    config = config_from_args(args)
    assert (config.max_connections, config.max_sessions) == (10, 20)
    assert config.deterministic_ids
    assert not config_from_args(build_parser().parse_args(["serve"])).deterministic_ids


def test_serve_execution_limits() -> None:
    args = build_parser().parse_args(
        ["serve", "--max-chain-sessions", "3", "--max-user-transactions-per-slot", "7"]
    )
    config = config_from_args(args)
    assert (config.max_chain_sessions, config.max_user_transactions_per_slot) == (3, 7)
    defaults = config_from_args(build_parser().parse_args(["serve"]))
    assert (defaults.max_chain_sessions, defaults.max_user_transactions_per_slot) == (512, 4096)
