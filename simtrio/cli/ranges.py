"""``simtrio ranges``: the slot ranges a server can replay (``GET /available-ranges``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import attrs
import trio

from simtrio.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Interrupt,
    Target,
    add_target_args,
    resolve_target,
    simtrio_error_of,
)
from simtrio.cli.output import render_table, write_json
from simtrio.client import BacktestClient
from simtrio.errors import SimtrioError

if TYPE_CHECKING:
    import argparse

    from simtrio.cli.common import Subparsers
    from simtrio.wire.types import AvailableRange

__all__ = ["add_parser", "command", "fetch_ranges", "render_ranges", "ranges_json"]


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("ranges", help="list the slot ranges a server can replay")
    add_target_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(handler=command)


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
    target = resolve_target(args)
    ranges = trio.run(_main, target)
    if isinstance(ranges, SimtrioError):
        print(f"simtrio ranges: {ranges}", file=sys.stderr)
        return EXIT_FAILED
    if ranges is None:
        return EXIT_INTERRUPTED
    if args.json:
        write_json(sys.stdout, ranges_json(ranges))
    else:
        print(render_ranges(ranges))
    return EXIT_OK
