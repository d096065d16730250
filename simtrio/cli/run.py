"""``simtrio run``: the command line around :func:`simtrio.cli.driver.execute_run`."""

from __future__ import annotations

__all__: list[str] = []

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, TextIO

import trio
from solders.pubkey import Pubkey

from simtrio import events
from simtrio.cli.agents import load_agents
from simtrio.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandInfo,
    Interrupt,
    UsageError,
    add_json_flag,
    add_target_args,
    iter_csv,
    resolve_target,
)
from simtrio.cli.console import configure_logging, stderr_console
from simtrio.cli.driver import DEFAULT_DISCONNECT_TIMEOUT, RunOptions, execute_run
from simtrio.cli.inject import ProgramBuildError, load_program_builds
from simtrio.cli.ndjson import NdjsonWriter
from simtrio.cli.output import write_json
from simtrio.cli.report import RunReport, render_summary
from simtrio.cli.simfile import SimWriter
from simtrio.errors import SimtrioError
from simtrio.params import MAX_DISCONNECT_TIMEOUT_SECS
from simtrio.wire.rules import U32_MAX, U64_MAX

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from rich.console import Console

    from simtrio.cli.ndjson import RunWriter

SUBSCRIPTION_KINDS = ("transactions", "account-diffs", "logs")
_KIND_ALIASES = {
    "transactions": "transactions",
    "transaction": "transactions",
    "txs": "transactions",
    "account-diffs": "account-diffs",
    "account-diff": "account-diffs",
    "account_diffs": "account-diffs",
    "accountdiffs": "account-diffs",
    "diffs": "account-diffs",
    "logs": "logs",
    "program-logs": "logs",
}
OUTPUT_FORMATS = ("sim", "simtrio")
LOGS_AVAILABLE = hasattr(events, "ProgramLogs")
"""Whether this build's sessions can subscribe to program logs."""


def _bounded(limit: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{text} is out of range (0..{limit})")
        return value

    return parse


INFO: Final = CommandInfo(
    name="run",
    help="run a backtest and print a summary",
    description=(
        "Drive a backtest from --start-slot to --end-slot (both inclusive), or to "
        "--start-slot + --slot-count, against --url or (with --embedded) an in-process "
        "reference server. Exit status: 0 completed, 1 failed (any sub-session), 2 usage, "
        "130 interrupted (SIGINT), 143 terminated (SIGTERM)."
    ),
)
"""The command's name and what ``--help`` says of it."""


_slot = _bounded(U64_MAX, "a slot number")
"""A slot number: a clear one-line error for anything that is not one."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start-slot", type=_slot, required=True, metavar="N")
    span = p.add_mutually_exclusive_group(required=True)
    span.add_argument("--end-slot", type=_slot, metavar="M", help="last slot (inclusive)")
    span.add_argument(
        "--slot-count",
        type=_slot,
        metavar="K",
        help="end slot = N + K (so K + 1 slots, as the library and sim count)",
    )
    add_target_args(p)
    p.add_argument(
        "--parallel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="split the range into parallel sub-sessions (default; --no-parallel: one session)",
    )
    p.add_argument(
        "--subscriptions",
        "--subscribe",
        dest="subscribe",
        action="append",
        metavar="KINDS",
        help="data-plane subscriptions, comma separated: transactions, account-diffs "
        "(also account-diff), logs",
    )
    p.add_argument(
        "--program-id",
        action="append",
        metavar="ID",
        help="program to subscribe to (repeatable; default with --embedded: its programs; "
        "implies --subscriptions transactions when no subscription is given)",
    )
    p.add_argument(
        "--program-so",
        action="append",
        metavar="PATH",
        help="program ELF (.so) loaded as the code of the --program-id in the same position, "
        "in every (sub-)session before its first step (repeatable)",
    )
    p.add_argument(
        "--extra-compute-units",
        type=_bounded(U32_MAX, "a number of compute units"),
        metavar="N",
        help="extra compute units the server grants each transaction",
    )
    p.add_argument(
        "--agents",
        metavar="FILE",
        type=Path,
        help="JSON list of agent objects sent verbatim in the create request; an entry's "
        "wallet (key wallet, wallet_pubkey or walletPubkey) gets a SOL and token PnL summary",
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
    add_json_flag(p, "the summary as one JSON line")
    p.add_argument("--record", metavar="DB", type=Path, help="record the run into a run store")
    p.add_argument(
        "--output-file",
        "--output",
        dest="output",
        metavar="PATH",
        type=Path,
        help="write the run as NDJSON (sim's format unless --format simtrio)",
    )
    p.add_argument(
        "--format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        default="sim",
        help="format of --output-file: sim (default) or simtrio (simtrio's own records)",
    )
    embedded = p.add_argument_group("embedded server")
    embedded.add_argument("--seed", type=int, default=0, help="synthetic chain number")
    embedded.add_argument(
        "--slot-delay", type=float, default=0.0, metavar="S", help="seconds each slot takes"
    )


def options_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> RunOptions:
    """Check what argparse cannot; raises :class:`UsageError`."""
    if args.end_slot is not None:
        if args.end_slot < args.start_slot:
            raise UsageError("--end-slot must not be below --start-slot")
        end_slot: int = args.end_slot
    else:
        end_slot = args.start_slot + args.slot_count
        if end_slot > U64_MAX:
            raise UsageError("--start-slot + --slot-count is beyond the last slot number")
    if args.step < 1:
        raise UsageError("--step must be >= 1")
    if not 0 <= args.disconnect_timeout <= MAX_DISCONNECT_TIMEOUT_SECS:
        raise UsageError(f"--disconnect-timeout must be in 0..{MAX_DISCONNECT_TIMEOUT_SECS}")
    if args.reconnect_max_total is not None and not args.reconnect_max_total > 0:
        raise UsageError("--reconnect-max-total must be > 0")
    if not args.slot_delay >= 0:
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
    if "logs" in kinds and not LOGS_AVAILABLE:
        raise UsageError("--subscriptions logs: program logs are not available in this build")
    program_ids = tuple(dict.fromkeys(iter_csv(args.program_id)))
    for program_id in program_ids:
        try:
            Pubkey.from_string(program_id)
        except ValueError:
            raise UsageError(f"--program-id {program_id!r} is not a base58 address") from None
    try:
        programs = load_program_builds(program_ids, [Path(p) for p in iter_csv(args.program_so)])
    except ProgramBuildError as exc:
        raise UsageError(str(exc)) from None
    if program_ids and not kinds:
        kinds.append("transactions")
    agents = load_agents(args.agents) if args.agents is not None else ()
    target = resolve_target(args, env)
    if kinds and not program_ids and not target.embedded:
        raise UsageError("--subscriptions needs --program-id when not using the embedded server")
    opts = RunOptions(
        target=target,
        start_slot=args.start_slot,
        end_slot=end_slot,
        parallel=args.parallel,
        subscribe=tuple(kinds),
        program_ids=program_ids,
        programs=programs,
        step=args.step,
        disconnect_timeout=args.disconnect_timeout,
        reconnect_max_total=args.reconnect_max_total,
        json=args.json,
        record=args.record,
        output=args.output,
        output_format=args.output_format,
        extra_compute_units=args.extra_compute_units,
        verbose=args.verbose,
        seed=args.seed,
        slot_delay=args.slot_delay,
        agents=agents,
    )
    try:
        opts.create()
    except SimtrioError as exc:
        raise UsageError(str(exc)) from None
    return opts


def exit_status(report: RunReport, interrupt: Interrupt | None = None) -> int:
    if report.interrupted:
        return EXIT_INTERRUPTED if interrupt is None else interrupt.exit_status
    return EXIT_FAILED if report.failed else EXIT_OK


def print_report(report: RunReport, *, as_json: bool, out: TextIO, detailed: bool = False) -> None:
    data = report.to_json(report.finished_at or 0.0)
    if as_json:
        write_json(out, data)
    else:
        out.write(render_summary(data, detailed=detailed) + "\n")
    out.flush()


def _open_output(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _writer(stream: BinaryIO, opts: RunOptions) -> RunWriter:
    if opts.output_format == "simtrio":
        return NdjsonWriter(stream)
    return SimWriter(stream)


def command(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    if opts.record is not None and not opts.record.parent.is_dir():
        raise UsageError(f"--record: no directory {opts.record.parent}")
    stream = _open_output(opts.output) if opts.output is not None else None
    console = stderr_console()
    configure_logging(opts.verbose, console)
    interrupt = Interrupt()
    try:
        writer = _writer(stream, opts) if stream is not None else None
        report = trio.run(_main, opts, writer, console, interrupt)
    finally:
        if stream is not None:
            stream.close()
    if report.error is not None and not report.sessions and not report.interrupted:
        # Nothing ran: one line says why, rather than a summary of zeros.
        if opts.json:
            print_report(report, as_json=True, out=sys.stdout)
        print(f"simtrio run: error: {report.error}", file=sys.stderr)
        return EXIT_USAGE if refused_as_invalid(report.error) else EXIT_FAILED
    print_report(report, as_json=opts.json, out=sys.stdout, detailed=opts.verbose > 0)
    return exit_status(report, interrupt)


def refused_as_invalid(error: str) -> bool:
    """The server refused the create itself as invalid (a range too long, too many sessions):
    a usage error. ``CreateFailed`` carries the server's error only in its text."""
    return error.startswith("CreateFailed: server error: InvalidRequest(")


async def _main(
    opts: RunOptions, writer: RunWriter | None, console: Console, interrupt: Interrupt
) -> RunReport:
    async with trio.open_nursery() as nursery:
        await nursery.start(interrupt.watch)
        report = await execute_run(opts, interrupt=interrupt, ndjson=writer, console=console)
        nursery.cancel_scope.cancel()
    return report
