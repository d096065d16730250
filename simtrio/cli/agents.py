"""Agents of ``simtrio run --agents``: the file, the wallet balances, the PnL summary.

An agents file is a JSON list of objects, each sent verbatim as one entry of the create
request's ``agents``. An entry names its wallet with one of :data:`WALLET_KEYS` (a base58
address); an entry without one still runs, it only has no balance change to report.

A wallet's balances are its lamports (``getBalance``) and, per mint, the sum of the amounts of
the token accounts it owns under the Token and Token-2022 programs. Token accounts are asked
for with ``getProgramAccounts`` filtered by owner; a server that does not take filters (the
reference server) is asked without them, and the accounts are filtered here either way (SPL
token account layout: mint at bytes 0..32, owner at 32..64, amount as u64 little-endian at
64..72).
"""

from __future__ import annotations

__all__: list[str] = []

import json
from typing import TYPE_CHECKING, Any, Final

import attrs
from solders.pubkey import Pubkey

from simtrio.cli.common import UsageError
from simtrio.errors import RpcError
from simtrio.wire import jsonrpc
from simtrio.wire.jsontext import JsonValue

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from simtrio.rpc import SessionRpc
    from simtrio.wire.types import AgentStatsReport

WALLET_KEYS: Final = ("wallet", "wallet_pubkey", "walletPubkey")
"""Keys of an agent entry that name its wallet, first found wins."""
TOKEN_PROGRAM: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM: Final = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
TOKEN_PROGRAMS: Final = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)
_ACCOUNT_LEN: Final = 165
_ACCOUNT_TYPE_ACCOUNT: Final = 2
"""Token-2022's account-type byte (at offset 165, with extensions) for a token account."""
_INVALID_PARAMS: Final = -32602


@attrs.frozen
class Agent:
    """One entry of the agents file: its name, wallet (or None) and the verbatim object."""

    name: str
    wallet: str | None
    entry: dict[str, JsonValue] = attrs.field(eq=False, repr=False)


def load_agents(path: Path) -> tuple[Agent, ...]:
    """Read an agents file; anything that is not a list of objects is a :class:`UsageError`."""
    try:
        data: object = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--agents: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--agents: {path} is not JSON ({exc})") from None
    if not isinstance(data, list):
        raise UsageError(f"--agents: {path} must hold a JSON list of agent objects")
    agents: list[Agent] = []
    for index, item in enumerate(data):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        if not isinstance(item, dict):
            raise UsageError(f"--agents: entry {index} is not an object")
        entry: dict[str, JsonValue] = item  # pyright: ignore[reportUnknownVariableType]
        agents.append(Agent(_name(entry, index), _wallet(entry, index), entry))
    return tuple(agents)


def _name(entry: Mapping[str, JsonValue], index: int) -> str:
    name = entry.get("name")
    return name if isinstance(name, str) and name else f"agent-{index}"


def _wallet(entry: Mapping[str, JsonValue], index: int) -> str | None:
    for key in WALLET_KEYS:
        if key in entry:
            value = entry[key]
            if not isinstance(value, str):
                raise UsageError(f"--agents: entry {index}: {key} must be a base58 address")
            try:
                Pubkey.from_string(value)
            except ValueError:
                raise UsageError(
                    f"--agents: entry {index}: {key} {value!r} is not a base58 address"
                ) from None
            return value
    return None


@attrs.frozen
class WalletBalances:
    """A wallet's lamports and token amounts by mint at one point of a session."""

    lamports: int
    tokens: dict[str, int] = attrs.field(factory=dict[str, int], eq=True)


def token_amounts(wallet: Pubkey, accounts: Sequence[tuple[Pubkey, bytes]]) -> dict[str, int]:
    """Sum per mint of the token accounts in ``accounts`` (key, data) that ``wallet`` owns."""
    owner = bytes(wallet)
    amounts: dict[str, int] = {}
    for _key, data in accounts:
        if len(data) < _ACCOUNT_LEN or data[32:64] != owner:
            continue
        if len(data) > _ACCOUNT_LEN and data[_ACCOUNT_LEN] != _ACCOUNT_TYPE_ACCOUNT:
            continue  # a Token-2022 mint with extensions, not a token account
        mint = str(Pubkey.from_bytes(data[0:32]))
        amounts[mint] = amounts.get(mint, 0) + int.from_bytes(data[64:72], "little")
    return amounts


async def _program_accounts(
    rpc: SessionRpc, program: str, wallet: str
) -> list[tuple[Pubkey, bytes]]:
    filters: list[JsonValue] = [{"memcmp": {"offset": 32, "bytes": wallet}}]
    if program == TOKEN_PROGRAM:
        filters.append({"dataSize": _ACCOUNT_LEN})
    params: list[JsonValue] = [program, {"encoding": "base64", "filters": filters}]
    try:
        result = await rpc.call("getProgramAccounts", params)
    except RpcError as exc:
        if exc.code != _INVALID_PARAMS:
            raise
        result = await rpc.call("getProgramAccounts", [program, {"encoding": "base64"}])
    return [(key, bytes(account.data)) for key, account in jsonrpc.program_accounts_result(result)]


async def read_balances(rpc: SessionRpc, wallets: Sequence[str]) -> dict[str, WalletBalances]:
    """Each wallet's SOL and token balances, read through the session RPC."""
    out: dict[str, WalletBalances] = {}
    for wallet in dict.fromkeys(wallets):
        key = Pubkey.from_string(wallet)
        lamports = await rpc.get_balance(key)
        tokens: dict[str, int] = {}
        for program in TOKEN_PROGRAMS:
            found = token_amounts(key, await _program_accounts(rpc, program, wallet))
            for mint, amount in found.items():
                tokens[mint] = tokens.get(mint, 0) + amount
        out[wallet] = WalletBalances(lamports, tokens)
    return out


def agent_pnl(
    agents: Sequence[Agent],
    before: Mapping[str, WalletBalances],
    after: Mapping[str, WalletBalances],
) -> list[dict[str, Any]]:
    """Per agent with a wallet: balances before and after and their change (JSON-ready)."""
    rows: list[dict[str, Any]] = []
    for agent in agents:
        if agent.wallet is None or agent.wallet not in before or agent.wallet not in after:
            continue
        start, end = before[agent.wallet], after[agent.wallet]
        mints = sorted(set(start.tokens) | set(end.tokens))
        rows.append(
            {
                "agent": agent.name,
                "wallet": agent.wallet,
                "sol_before": start.lamports,
                "sol_after": end.lamports,
                "sol_change": end.lamports - start.lamports,
                "tokens": [
                    {
                        "mint": mint,
                        "before": start.tokens.get(mint, 0),
                        "after": end.tokens.get(mint, 0),
                        "change": end.tokens.get(mint, 0) - start.tokens.get(mint, 0),
                    }
                    for mint in mints
                ],
            }
        )
    return rows


def stats_json(stats: Sequence[AgentStatsReport]) -> list[dict[str, Any]]:
    """``AgentStatsReport`` values from ``completed`` as JSON objects."""
    return [attrs.asdict(report) for report in stats]


_LAMPORTS_PER_SOL: Final = 1_000_000_000


def _sol(lamports: int) -> str:
    sign = "-" if lamports < 0 else "+"
    whole, frac = divmod(abs(lamports), _LAMPORTS_PER_SOL)
    return f"{sign}{whole}.{frac:09d} SOL"


def _signed(value: int) -> str:
    return f"{value:+d}"


def render_agents(report: Mapping[str, Any]) -> list[str]:
    """The agent PnL table and the agents' stats of a summary (empty without agents)."""
    from simtrio.cli.console import render_table

    pnl: list[dict[str, Any]] = report.get("agents") or []
    stats: list[dict[str, Any]] = report.get("agent_stats") or []
    many = len({row["session_id"] for row in [*pnl, *stats]}) > 1
    head: list[str] = ["SESSION"] if many else []
    lines: list[str] = []
    if pnl:
        rows: list[list[Any]] = []
        for row in pnl:
            tokens: list[dict[str, Any] | None] = row["tokens"] or [None]
            for k, token in enumerate(tokens):
                first = k == 0
                rows.append(
                    ([row["session_id"] if first else ""] if many else [])
                    + [
                        row["agent"] if first else "",
                        row["wallet"] if first else "",
                        _sol(row["sol_change"]) if first else "",
                        "-" if token is None else token["mint"],
                        "-" if token is None else _signed(token["change"]),
                    ]
                )
        headers = [*head, "AGENT", "WALLET", "SOL CHANGE", "MINT", "TOKEN CHANGE"]
        lines += ["", "Agent PnL:", render_table(headers, rows)]
    if stats:
        rows = [
            ([stat["session_id"]] if many else [])
            + [
                stat["name"],
                stat["slots_processed"],
                stat["opportunities_found"],
                stat["txs_produced"],
                stat["txs_submitted"],
                stat["txs_failed"],
            ]
            for stat in stats
        ]
        headers = [*head, "AGENT", "SLOTS", "OPPORTUNITIES", "TXS", "SUBMITTED", "FAILED"]
        lines += ["", "Agent stats:", render_table(headers, rows)]
    for problem in report.get("agent_errors") or ():
        lines.append(f"agent balances of {problem['session_id']}: {problem['error']}")
    return lines
