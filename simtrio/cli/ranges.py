"""``simtrio ranges``: the slot ranges a server can replay (``GET /available-ranges``).

``--after DATE`` and ``--before DATE`` (ISO 8601; UTC unless the date says otherwise) keep the
ranges that overlap that period: a range is listed when it ends at or after ``--after`` and
starts at or before ``--before``. A range whose times the server does not give is left out as
soon as a date is given.
"""

from __future__ import annotations

__all__: list[str] = []

import argparse
import datetime as dt
import sys
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from simtrio.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandInfo,
    Interrupt,
    Target,
    UsageError,
    add_json_flag,
    add_target_args,
    resolve_target,
    simtrio_error_of,
)
from simtrio.cli.console import render_table
from simtrio.cli.output import write_json
from simtrio.client import BacktestClient
from simtrio.errors import SimtrioError

if TYPE_CHECKING:
    from simtrio.wire.types import AvailableRange


def parse_date(text: str) -> dt.datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date: {text!r} (e.g. 2025-01-31 or 2025-01-31T12:00:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


INFO: Final = CommandInfo(
    name="ranges",
    help="list the slot ranges a server can replay",
    description="--after and --before keep the ranges that overlap the period they give.",
)
"""The command's name and what ``--help`` says of it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_args(p)
    for flag, keeps in (("--after", "ending at or after"), ("--before", "starting at or before")):
        p.add_argument(flag, type=parse_date, metavar="DATE", help=f"ranges {keeps} DATE (UTC)")
    add_json_flag(p, "a JSON array")


def _time(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return parse_date(text)
    except argparse.ArgumentTypeError:
        return None


def filter_ranges(
    ranges: list[AvailableRange], after: dt.datetime | None, before: dt.datetime | None
) -> list[AvailableRange]:
    """The ranges that overlap ``[after, before]`` (either bound may be open)."""
    if after is None and before is None:
        return list(ranges)
    kept: list[AvailableRange] = []
    for r in ranges:
        start = _time(r.bundle_start_slot_utc)
        end = _time(r.max_bundle_end_slot_utc) or start
        if start is None or end is None:
            continue
        if after is not None and end < after:
            continue
        if before is not None and start > before:
            continue
        kept.append(r)
    return kept


async def fetch_ranges(target: Target) -> list[AvailableRange]:
    """Ask ``target`` (the embedded server when it has no URL)."""
    if target.url is not None:
        return await BacktestClient(target.url, target.api_key).available_ranges()
    from simtrio.server import serve

    async with serve() as server:
        return await BacktestClient(server.control_url).available_ranges()


def ranges_json(ranges: list[AvailableRange]) -> list[dict[str, Any]]:
    return [attrs.asdict(r) for r in ranges]


def render_ranges(ranges: list[AvailableRange]) -> str:
    headers = ("BUNDLE-START", "MAX-END", "SLOTS", "SNAPSHOT", "START-UTC", "MAX-END-UTC")
    rows = [
        [
            r.bundle_start_slot,
            r.max_bundle_end_slot,
            None
            if r.max_bundle_end_slot is None
            else r.max_bundle_end_slot - r.bundle_start_slot + 1,
            r.snapshot_slot,
            r.bundle_start_slot_utc,
            r.max_bundle_end_slot_utc,
        ]
        for r in ranges
    ]
    if not rows:
        return "no ranges available"
    return render_table(headers, rows)


async def _main(target: Target) -> list[AvailableRange] | SimtrioError | None:
    interrupt = Interrupt()
    result: list[AvailableRange] | SimtrioError | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(interrupt.watch)
        with interrupt.hard:
            try:
                result = await fetch_ranges(target)
            except (SimtrioError, BaseExceptionGroup) as exc:
                result = simtrio_error_of(exc)
                if result is None:
                    raise
        nursery.cancel_scope.cancel()
    return result


def command(args: argparse.Namespace) -> int:
    if args.after is not None and args.before is not None and args.after > args.before:
        raise UsageError("--after must not be later than --before")
    target = resolve_target(args)
    ranges = trio.run(_main, target)
    if isinstance(ranges, SimtrioError):
        print(f"simtrio ranges: {ranges}", file=sys.stderr)
        return EXIT_FAILED
    if ranges is None:
        return EXIT_INTERRUPTED
    ranges = filter_ranges(ranges, args.after, args.before)
    if args.json:
        write_json(sys.stdout, ranges_json(ranges))
    else:
        print(render_ranges(ranges))
    return EXIT_OK
