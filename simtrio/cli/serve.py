"""``simtrio serve``: run the reference server in the foreground until Ctrl-C."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

import trio

from simtrio.cli.common import EXIT_FAILED, EXIT_OK, Interrupt, UsageError, find_leaf

if TYPE_CHECKING:
    import argparse

    from simtrio.cli.common import Subparsers
    from simtrio.server import ReferenceServer, ServerConfig

__all__ = ["add_parser", "command", "config_from_args", "serve_forever"]


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run the reference server until Ctrl-C",
        description="Prints the control URL on stdout once listening.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    p.add_argument("--api-key", help="require this X-API-Key on control upgrades")
    p.add_argument("--seed", type=int, default=0, help="synthetic chain number")
    p.add_argument("--slot-delay", type=float, default=0.0, metavar="S", help="seconds per slot")
    p.set_defaults(handler=command)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from simtrio.server import ServerConfig

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be in 0..65535")
    if args.slot_delay < 0:
        raise UsageError("--slot-delay must be >= 0")
    return ServerConfig(api_key=args.api_key or None, seed=args.seed, slot_delay=args.slot_delay)


async def serve_forever(
    config: ServerConfig,
    host: str,
    port: int,
    out: TextIO,
    *,
    task_status: trio.TaskStatus[ReferenceServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server, print its control URL to ``out``, and serve until cancelled."""
    from simtrio.server import run_server

    async with trio.open_nursery() as nursery:
        server: ReferenceServer = await nursery.start(run_server, config, host, port)
        out.write(f"{server.control_url}\n")
        out.flush()
        task_status.started(server)


async def _main(config: ServerConfig, host: str, port: int) -> None:
    interrupt = Interrupt()
    async with trio.open_nursery() as nursery:
        await nursery.start(interrupt.watch)
        with interrupt.hard:
            await serve_forever(config, host, port, sys.stdout)
        nursery.cancel_scope.cancel()


def command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        trio.run(_main, config, args.host, args.port)
    except (OSError, BaseExceptionGroup) as exc:
        error = find_leaf(exc, OSError)
        if error is None:
            raise
        where = f"{args.host}:{args.port}"
        print(
            f"simtrio serve: cannot listen on {where}: {error.strerror or error}", file=sys.stderr
        )
        return EXIT_FAILED
    return EXIT_OK
