"""``simtrio summarize FILE [--accounts A,B]``: what a run file holds, at a glance.

Prints the run's metadata and totals. With ``--accounts``, each wallet's opening and closing
balances over the run: SOL from the ``sol_changes`` of the wallet's account, tokens from the
``token_changes`` of the accounts it owns (or that are it), per mint. The change at the lowest
slot gives the opening balance (its ``pre``), the change at the highest slot the closing one
(its ``post``); changes within one slot keep the file's order.
"""

from __future__ import annotations

__all__: list[str] = []

import sys
from typing import TYPE_CHECKING, Any, Final, cast

from simtrio.cli.common import EXIT_OK, EXIT_USAGE, CommandInfo, add_json_flag, iter_csv
from simtrio.cli.console import render_table
from simtrio.cli.output import write_json
from simtrio.cli.runfile import RunFile, RunFileError, load_run

if TYPE_CHECKING:
    import argparse


INFO: Final = CommandInfo(
    name="summarize",
    help="summarise a run file (metadata, totals, wallet balances)",
    description="Exit status 2 when the run cannot be read.",
)
"""The command's name and what ``--help`` says of it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a run file of any format, or DB:RUN_ID")
    p.add_argument(
        "--accounts",
        action="append",
        metavar="A,B",
        help="wallets whose opening and closing balances to show (comma separated)",
    )
    add_json_flag(p, "one JSON object")


def _slot_key(item: tuple[int, dict[str, Any]]) -> tuple[int, int]:
    index, tx = item
    slot = tx["slot"]
    return (slot if isinstance(slot, int) else -1, index)


def wallet_balances(run: RunFile, wallet: str) -> list[dict[str, Any]]:
    """Opening and closing balances of ``wallet``: SOL first (``mint`` None), then per mint."""
    ordered = sorted(enumerate(run.transactions.values()), key=_slot_key)
    spans: dict[str | None, dict[str, Any]] = {}
    for _, tx in ordered:
        moves: list[tuple[str | None, dict[str, Any]]] = [
            (None, c) for c in tx["sol_changes"] if c.get("account") == wallet
        ]
        moves += [
            (c.get("mint"), c)
            for c in tx["token_changes"]
            if wallet in (c.get("owner"), c.get("account")) and isinstance(c.get("mint"), str)
        ]
        for mint, change in moves:
            span = spans.get(mint)
            if span is None:
                span = spans[mint] = {
                    "wallet": wallet,
                    "mint": mint,
                    "opening": change.get("pre"),
                    "first_slot": tx["slot"],
                    "changes": 0,
                }
                if mint is not None:
                    span["decimals"] = change.get("decimals")
            span["closing"] = change.get("post")
            span["last_slot"] = tx["slot"]
            span["changes"] += 1
    for span in spans.values():
        opening, closing = span["opening"], span["closing"]
        both = isinstance(opening, int) and isinstance(closing, int)
        span["change"] = closing - opening if both else None
    return sorted(spans.values(), key=lambda s: (s["mint"] is not None, s["mint"] or ""))


def _overview(run: RunFile) -> dict[str, Any]:
    meta = run.metadata or {}
    summary = run.summary or {}
    totals = run.totals()
    return {
        "source": run.source,
        "format": run.format,
        "start_slot": meta.get("start_slot", summary.get("start_slot")),
        "end_slot": meta.get("end_slot", summary.get("end_slot")),
        "program_ids": meta.get("program_ids") or [],
        "program_so": meta.get("program_so") or [],
        "ran_at_unix_secs": meta.get("ran_at_unix_secs"),
        "sessions": len(run.session_ids) or None,
        "finished": run.finished,
        **totals,
        "account_diffs": run.account_diffs,
    }


def _text(run: RunFile, overview: dict[str, Any], balances: list[dict[str, Any]] | None) -> str:
    pairs = [
        (
            k.replace("_", " "),
            ", ".join(map(str, cast("list[object]", v))) if isinstance(v, list) else str(v),
        )
        for k, v in overview.items()
        if v not in (None, [])
    ]
    width = max(len(k) for k, _ in pairs)
    lines = [f"{k.ljust(width)}  {v}" for k, v in pairs]
    if balances is not None:
        lines.append("")
        if not balances:
            lines.append("no balance changes for the given accounts")
        else:
            rows = [
                [b["wallet"], b["mint"] or "SOL", b["opening"], b["closing"], b["change"],
                 f"{b['first_slot']}-{b['last_slot']}"]
                for b in balances
            ]  # fmt: skip
            headers = ("WALLET", "MINT", "OPENING", "CLOSING", "CHANGE", "SLOTS")
            lines.append(render_table(headers, rows))
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    try:
        run = load_run(args.file)
    except RunFileError as exc:
        print(f"simtrio summarize: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if run.skipped:
        print(
            f"simtrio: warning: {run.source}: skipped {run.skipped} record(s) of unknown type",
            file=sys.stderr,
        )
    overview = _overview(run)
    wallets = list(dict.fromkeys(iter_csv(args.accounts)))
    balances = (
        [b for wallet in wallets for b in wallet_balances(run, wallet)]
        if args.accounts is not None
        else None
    )
    if args.json:
        out = dict(overview)
        if balances is not None:
            out["balances"] = balances
        write_json(sys.stdout, out)
    else:
        print(_text(run, overview, balances))
    return EXIT_OK
