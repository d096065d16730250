"""``simtrio run``: the command line around :func:`simtrio.cli.driver.execute_run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

import trio

from simtrio.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Interrupt,
    UsageError,
    add_target_args,
    iter_csv,
    resolve_target,
)
from simtrio.cli.driver import DEFAULT_DISCONNECT_TIMEOUT, RunOptions, execute_run
from simtrio.cli.ndjson import NdjsonWriter
from simtrio.cli.output import write_json
from simtrio.cli.report import RunReport, render_summary
from simtrio.params import MAX_DISCONNECT_TIMEOUT_SECS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simtrio.cli.common import Subparsers

__all__ = [
    "SUBSCRIPTION_KINDS",
    "RunOptions",
    "add_parser",
    "command",
    "execute_run",
    "exit_status",
    "options_from_args",
    "print_report",
]

SUBSCRIPTION_KINDS = ("transactions", "account-diffs")
_KIND_ALIASES = {
    "transactions": "transactions",
    "transaction": "transactions",
    "txs": "transactions",
    "account-diffs": "account-diffs",
    "account_diffs": "account-diffs",
    "accountdiffs": "account-diffs",
    "diffs": "account-diffs",
}


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run",
        help="run a backtest and print a summary",
        description=(
            "Drive a backtest from --start-slot to --end-slot (inclusive) or for --slot-count "
            "slots, against --url or an embedded reference server. Exit status: 0 completed, "
            "1 failed (any sub-session), 2 usage, 130 interrupted."
        ),
    )
    p.add_argument("--start-slot", type=int, required=True, metavar="N")
    span = p.add_mutually_exclusive_group(required=True)
    span.add_argument("--end-slot", type=int, metavar="M", help="last slot (inclusive)")
    span.add_argument("--slot-count", type=int, metavar="K", help="end slot = start + K")
    add_target_args(p)
    p.add_argument(
        "--parallel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="split the range into parallel sub-sessions (default; --no-parallel: one session)",
    )
    p.add_argument(
        "--subscribe",
        action="append",
        metavar="KINDS",
        help="data-plane subscriptions, comma separated: transactions, account-diffs",
    )
    p.add_argument(
        "--program-id",
        action="append",
        metavar="ID",
        help="program to subscribe to (repeatable; default with the embedded server: its "
        "programs; implies --subscribe transactions when --subscribe is absent)",
    )
    p.add_argument("--step", type=int, default=1, metavar="N", help="slots per continue")
    p.add_argument(
        "--disconnect-timeout",
        type=int,
        default=DEFAULT_DISCONNECT_TIMEOUT,
        metavar="S",
        help="seconds the server keeps a detached session (enables re-attach; 0..900)",
    )
    p.add_argument(
        "--reconnect-max-total",
        type=float,
        metavar="S",
        help="longest outage before giving up (default: the disconnect timeout)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.add_argument("--record", metavar="DB", type=Path, help="record the run into a run store")
    p.add_argument(
        "--output", metavar="FILE.ndjson", type=Path, help="write every notification as NDJSON"
    )
    embedded = p.add_argument_group("embedded server")
    embedded.add_argument("--seed", type=int, default=0, help="synthetic chain number")
    embedded.add_argument(
        "--slot-delay", type=float, default=0.0, metavar="S", help="seconds each slot takes"
    )
    p.set_defaults(handler=command)


def options_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> RunOptions:
    """Check what argparse cannot; raises :class:`UsageError`."""
    if args.start_slot < 0:
        raise UsageError("--start-slot must be >= 0")
    if args.end_slot is not None:
        if args.end_slot < args.start_slot:
            raise UsageError("--end-slot must not be below --start-slot")
        end_slot: int = args.end_slot
    else:
        if args.slot_count < 0:
            raise UsageError("--slot-count must be >= 0")
        end_slot = args.start_slot + args.slot_count
    if args.step < 1:
        raise UsageError("--step must be >= 1")
    if not 0 <= args.disconnect_timeout <= MAX_DISCONNECT_TIMEOUT_SECS:
        raise UsageError(f"--disconnect-timeout must be in 0..{MAX_DISCONNECT_TIMEOUT_SECS}")
    if args.reconnect_max_total is not None and not args.reconnect_max_total > 0:
        raise UsageError("--reconnect-max-total must be > 0")
    if args.slot_delay < 0:
        raise UsageError("--slot-delay must be >= 0")
    kinds: list[str] = []
    for item in iter_csv(args.subscribe):
        kind = _KIND_ALIASES.get(item.lower())
        if kind is None:
            raise UsageError(
                f"unknown subscription {item!r} (choose from {', '.join(SUBSCRIPTION_KINDS)})"
            )
        if kind not in kinds:
            kinds.append(kind)
    program_ids = tuple(dict.fromkeys(iter_csv(args.program_id)))
    if program_ids and not kinds:
        kinds.append("transactions")
    target = resolve_target(args, env)
    if kinds and not program_ids and not target.embedded:
        raise UsageError("--subscribe needs --program-id when not using the embedded server")
    return RunOptions(
        target=target,
        start_slot=args.start_slot,
        end_slot=end_slot,
        parallel=args.parallel,
        subscribe=tuple(kinds),
        program_ids=program_ids,
        step=args.step,
        disconnect_timeout=args.disconnect_timeout,
        reconnect_max_total=args.reconnect_max_total,
        json=args.json,
        record=args.record,
        output=args.output,
        seed=args.seed,
        slot_delay=args.slot_delay,
    )


def exit_status(report: RunReport) -> int:
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if report.failed else EXIT_OK


def print_report(report: RunReport, *, as_json: bool, out: TextIO) -> None:
    data = report.to_json(report.finished_at or 0.0)
    if as_json:
        write_json(out, data)
    else:
        out.write(render_summary(data) + "\n")
    out.flush()


def _open_output(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def command(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    if opts.record is not None and not opts.record.parent.is_dir():
        raise UsageError(f"--record: no directory {opts.record.parent}")
    stream = _open_output(opts.output) if opts.output is not None else None
    try:
        ndjson = NdjsonWriter(stream) if stream is not None else None
        progress = sys.stderr if sys.stderr.isatty() else None
        report = trio.run(_main, opts, ndjson, progress)
    finally:
        if stream is not None:
            stream.close()
    print_report(report, as_json=opts.json, out=sys.stdout)
    return exit_status(report)


async def _main(
    opts: RunOptions, ndjson: NdjsonWriter | None, progress: TextIO | None
) -> RunReport:
    interrupt = Interrupt()
    async with trio.open_nursery() as nursery:
        await nursery.start(interrupt.watch)
        report = await execute_run(
            opts, interrupt=interrupt, ndjson=ndjson, progress=progress, notice=sys.stderr
        )
        nursery.cancel_scope.cancel()
    return report
