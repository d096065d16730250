"""``simtrio replay``: serve a recorded run as a backtest server until Ctrl-C.

Point the same strategy at the printed URL (``simtrio run --url ... `` with the recorded range,
step and subscriptions) and it sees the recorded events again. A client whose requests differ
from the recording gets an error; the divergences are listed when the server stops (exit 1).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import trio

from simtrio.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Interrupt,
    UsageError,
    find_leaf,
    simtrio_error_of,
)
from simtrio.errors import SimtrioError

if TYPE_CHECKING:
    import argparse

    from simtrio.cli.common import Subparsers
    from simtrio.recording.replay import ReplayServer

__all__ = ["add_parser", "command", "replay_forever"]


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "replay",
        help="serve a recorded run until Ctrl-C",
        description="Prints the control URL on stdout once listening.",
    )
    p.add_argument("db", metavar="DB", type=Path)
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    p.set_defaults(handler=command)


async def replay_forever(
    db: Path,
    run_id: str,
    host: str,
    port: int,
    out: TextIO,
    divergences: list[str],
    *,
    task_status: trio.TaskStatus[ReplayServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, printing the control URL; divergences are appended on the way out."""
    from simtrio.recording.replay import replay_server

    async with replay_server(db, run_id, host=host, port=port, raise_on_divergence=False) as server:
        out.write(f"{server.control_url}\n")
        out.flush()
        task_status.started(server)
        try:
            await trio.sleep_forever()
        finally:
            divergences.extend(str(d) for d in server.divergences)


async def _main(args: argparse.Namespace, divergences: list[str]) -> None:
    interrupt = Interrupt()
    async with trio.open_nursery() as nursery:
        await nursery.start(interrupt.watch)
        with interrupt.hard:
            await replay_forever(
                args.db, args.run_id, args.host, args.port, sys.stdout, divergences
            )
        nursery.cancel_scope.cancel()


def command(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be in 0..65535")
    if not args.db.exists():
        print(f"simtrio replay: no run store at {args.db}", file=sys.stderr)
        return EXIT_FAILED
    divergences: list[str] = []
    try:
        trio.run(_main, args, divergences)
    except (OSError, BaseExceptionGroup, SimtrioError) as exc:
        error: BaseException | None = simtrio_error_of(exc) or find_leaf(exc, OSError)
        if error is None:
            raise
        print(f"simtrio replay: {error}", file=sys.stderr)
        return EXIT_FAILED
    for message in divergences:
        print(f"simtrio replay: divergence: {message}", file=sys.stderr)
    return EXIT_FAILED if divergences else EXIT_OK
