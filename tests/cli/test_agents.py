"""``simtrio run --agents``: the agents file, the wallet balances and the PnL summary."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from solders.account import Account
from solders.pubkey import Pubkey

from simtrio.cli import agents as agents_mod
from simtrio.cli.agents import (
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    Agent,
    WalletBalances,
    agent_pnl,
    load_agents,
    read_balances,
    token_amounts,
)
from simtrio.cli.common import UsageError
from simtrio.cli.driver import RunOptions
from simtrio.cli.main import main
from simtrio.managed.session import open_managed_session
from simtrio.params import Continue, CreateSession
from simtrio.server import ServerConfig, serve

if TYPE_CHECKING:
    from pathlib import Path

WALLET = Pubkey.from_string("9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin")
OTHER = Pubkey.from_string("8yKXtg3CW4Vb1Tn6fYN4D5Vz2rSQjM3z5yJRa7QdDvGq")
MINT = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
MINT2 = Pubkey.from_string("So11111111111111111111111111111111111111112")
TOKEN_ACCOUNT = Pubkey.from_string("7UX2i7SucgLMQcfZ75s3VXmZZY4YRUyJN9X1RgfMoDUi")
TOKEN_ACCOUNT2 = Pubkey.from_string("3yFwqXBfZY4jBVUafQ1YEXw189y2dN3V5KQq9uzBDy1E")
FOREIGN_ACCOUNT = Pubkey.from_string("2ojv9BAiHUrvsm9gxDe7fJSzbNZSJcxZvf8dqmWGHG8S")


def _token_data(mint: Pubkey, owner: Pubkey, amount: int, extra: bytes = b"") -> bytes:
    body = bytes(mint) + bytes(owner) + amount.to_bytes(8, "little")
    return body + bytes(165 - len(body)) + extra


def _token_account(
    mint: Pubkey, owner: Pubkey, amount: int, program: str = TOKEN_PROGRAM
) -> Account:
    data = _token_data(mint, owner, amount)
    return Account(2_039_280, data, Pubkey.from_string(program), False, 0)


def _agents_file(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "agents.json"
    path.write_text(json.dumps(entries))
    return path


# -- the file ----------------------------------------------------------------------------------


def test_an_agents_file_names_wallets_and_is_sent_verbatim(tmp_path: Path) -> None:
    entries: list[dict[str, Any]] = [
        {"name": "arb", "wallet": str(WALLET), "config": {"x": [1, 2]}},
        {"walletPubkey": str(OTHER)},
        {"kind": "watcher"},
    ]
    loaded = load_agents(_agents_file(tmp_path, entries))
    assert [(a.name, a.wallet) for a in loaded] == [
        ("arb", str(WALLET)),
        ("agent-1", str(OTHER)),
        ("agent-2", None),
    ]
    opts = RunOptions(target=None, start_slot=0, end_slot=1, agents=loaded)  # type: ignore[arg-type]
    assert list(opts.create().agents) == entries


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{}", "must hold a JSON list"),
        ("[1]", "entry 0 is not an object"),
        ("[{", "is not JSON"),
        ('[{"wallet": 5}]', "wallet must be a base58 address"),
        ('[{"wallet_pubkey": "nope"}]', "'nope' is not a base58 address"),
    ],
)
def test_a_bad_agents_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "agents.json"
    path.write_text(text)
    with pytest.raises(UsageError, match="--agents"):
        load_agents(path)
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "3", "--agents", str(path)]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line


def test_a_missing_agents_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_agents(tmp_path / "none.json")


# -- balances ----------------------------------------------------------------------------------


def test_token_amounts_follow_the_spl_layout() -> None:
    mint_2022 = bytes(165) + bytes([1]) + bytes(10)  # Token-2022 mint with extensions
    accounts = [
        (TOKEN_ACCOUNT, _token_data(MINT, WALLET, 7)),
        (TOKEN_ACCOUNT2, _token_data(MINT, WALLET, 2**64 - 1)),
        (FOREIGN_ACCOUNT, _token_data(MINT, OTHER, 100)),
        (OTHER, _token_data(MINT2, WALLET, 5, extra=bytes([2, 0, 0]))),
        (MINT, bytes(WALLET) * 5 + mint_2022[160:]),
        (MINT2, bytes(82)),
    ]
    assert token_amounts(WALLET, accounts) == {str(MINT): 2**64 + 6, str(MINT2): 5}


def test_agent_pnl_is_after_minus_before_per_wallet_and_mint() -> None:
    agents = (Agent("a", str(WALLET), {}), Agent("b", None, {}))
    before = {str(WALLET): WalletBalances(1_000, {str(MINT): 50})}
    after = {str(WALLET): WalletBalances(400, {str(MINT2): 3})}
    (row,) = agent_pnl(agents, before, after)
    assert row["sol_change"] == -600
    assert row["tokens"] == [
        {"mint": str(MINT), "before": 50, "after": 0, "change": -50},
        {"mint": str(MINT2), "before": 0, "after": 3, "change": 3},
    ]


async def test_balances_are_read_through_the_session_rpc() -> None:
    async with (
        serve(ServerConfig()) as server,
        open_managed_session(server.control_url, "", CreateSession(10, end_slot=12)) as session,
        session.rpc() as rpc,
    ):
        before = await read_balances(rpc, [str(WALLET)])
        assert before == {str(WALLET): WalletBalances(0, {})}
        await rpc.request_airdrop(WALLET, 1_500_000_000)
        await rpc.modify_accounts(
            {
                TOKEN_ACCOUNT: _token_account(MINT, WALLET, 1_234),
                TOKEN_ACCOUNT2: _token_account(MINT2, WALLET, 9, TOKEN_2022_PROGRAM),
                FOREIGN_ACCOUNT: _token_account(MINT, OTHER, 77),
            }
        )
        after = await read_balances(rpc, [str(WALLET), str(WALLET)])
    assert after == {str(WALLET): WalletBalances(1_500_000_000, {str(MINT): 1_234, str(MINT2): 9})}
    (row,) = agent_pnl((Agent("arb", str(WALLET), {}),), before, after)
    assert row["sol_change"] == 1_500_000_000
    assert [t["change"] for t in row["tokens"]] == [1_234, 9]


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture
def funded_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every (sub-)session's first step gives the wallet 2 SOL and 500 of ``MINT``."""
    original = RunOptions.first_continue

    def first_continue(self: RunOptions, start_slot: int) -> Continue:
        base = original(self, start_slot)
        states = {
            WALLET: Account(2_000_000_000, b"", Pubkey.default(), False, 0),
            TOKEN_ACCOUNT: _token_account(MINT, WALLET, 500),
        }
        return Continue(base.advance_count, modify_account_states=states)

    monkeypatch.setattr(RunOptions, "first_continue", first_continue)


@pytest.mark.usefixtures("funded_first_step")
@pytest.mark.parametrize("parallel", ["--parallel", "--no-parallel"])
def test_run_ends_with_the_agent_pnl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parallel: str
) -> None:
    path = _agents_file(tmp_path, [{"name": "arb", "wallet": str(WALLET)}, {"name": "w"}])
    out_file = tmp_path / "run.ndjson"
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "199", parallel,
            "--agents", str(path), "--output-file", str(out_file)]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sessions = {s["session_id"] for s in report["sessions"]}
    assert len(sessions) == (2 if parallel == "--parallel" else 1)
    assert report["agent_errors"] == []
    # Each (sub-)session is its own chain: each gets the funding once.
    assert {row["session_id"] for row in report["agents"]} == sessions
    for row in report["agents"]:
        assert row["agent"] == "arb"
        assert (row["sol_before"], row["sol_after"], row["sol_change"]) == (
            0,
            2_000_000_000,
            2_000_000_000,
        )
        assert row["tokens"] == [{"mint": str(MINT), "before": 0, "after": 500, "change": 500}]
    # The same figures in the sim NDJSON summary.
    summary = json.loads(out_file.read_text().splitlines()[-1])
    assert summary["type"] == "summary"
    assert summary["data"]["agents"] == report["agents"]
    # AgentStatsReport comes with completed (the reference server sends it for single
    # sessions only).
    if parallel == "--no-parallel":
        names = [s["name"] for s in report["agent_stats"]]
        assert names == ["arb", "w"]
        assert all(s["slots_processed"] == 200 for s in report["agent_stats"])
    # The human summary shows both tables.
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Agent PnL:" in text
    assert "+2.000000000 SOL" in text
    assert "+500" in text
    assert str(MINT) in text
    if parallel == "--no-parallel":
        assert "Agent stats:" in text


def test_a_run_without_agents_has_no_agent_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--embedded", "--start-slot", "0", "--end-slot", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "agents" not in report


def test_a_failed_balance_read_is_reported_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from simtrio.errors import RpcError

    async def broken(*_args: object) -> dict[str, WalletBalances]:
        raise RpcError(-32000, "no balances today")

    monkeypatch.setattr("simtrio.cli.driver.read_balances", broken)
    assert agents_mod.read_balances is not broken
    path = _agents_file(tmp_path, [{"wallet": str(WALLET)}])
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "3", "--agents", str(path)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["status"] == "completed"
    assert report["agents"] == []
    (problem,) = report["agent_errors"]
    assert "no balances today" in problem["error"]
