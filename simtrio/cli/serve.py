"""``simtrio serve``: run the reference server in the foreground until Ctrl-C."""

from __future__ import annotations

__all__: list[str] = []

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs
import trio

from simtrio.cli.common import EXIT_FAILED, EXIT_OK, CommandInfo, Interrupt, UsageError
from simtrio.core.groups import find_leaf

if TYPE_CHECKING:
    import argparse

    from simtrio.server import ReferenceServer, ServerConfig


INFO: Final = CommandInfo(
    name="serve",
    help="run the reference server until Ctrl-C",
    description=(
        "Prints the control URL on stdout once listening. The API key comes from "
        "--api-key-file, else --api-key, else $SIMULATOR_API_KEY; with none, any key is "
        "accepted."
    ),
)
"""The command's name and what ``--help`` says of it."""


_LIMITS: Final = (
    ("max_connections", "connections served at once (4096)"),
    ("max_sessions", "live sessions and sub-sessions (4096)"),
    ("max_session_slots", "slots one create may ask for (1000000)"),
    ("max_chain_sessions", "sessions holding a LiteSVM at once (512)"),
    ("max_user_transactions_per_slot", "user transactions one slot of a session takes (4096)"),
)
"""The ``ServerConfig`` limits ``--max-*`` options set, with their help (default in brackets)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    key = p.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="require the X-API-Key in this file (its first line) on control upgrades",
    )
    key.add_argument(
        "--api-key",
        help="require this X-API-Key (visible to other local users: prefer --api-key-file)",
    )
    p.add_argument("--seed", type=int, default=0, help="synthetic chain number")
    p.add_argument("--slot-delay", type=float, default=0.0, metavar="S", help="seconds per slot")
    p.add_argument(
        "--deterministic-ids",
        action="store_true",
        help="derive session ids from --seed (same seed, same ids) instead of random ones",
    )
    limits = p.add_argument_group("limits")
    for field, text in _LIMITS:
        limits.add_argument(f"--{field.replace('_', '-')}", type=int, metavar="N", help=text)


def _api_key(args: argparse.Namespace) -> str | None:
    from simtrio.server.config import API_KEY_ENV

    path: Path | None = args.api_key_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise UsageError(f"--api-key-file {path}: {reason}") from None
        lines = text.splitlines()
        key = lines[0].strip() if lines else ""
        if not key:
            raise UsageError(f"--api-key-file {path}: the file has no key on its first line")
        return key
    if args.api_key:
        return str(args.api_key)
    return os.environ.get(API_KEY_ENV) or None


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from simtrio.server import ServerConfig

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be in 0..65535")
    if args.slot_delay < 0:
        raise UsageError("--slot-delay must be >= 0")
    config = ServerConfig(
        api_key=_api_key(args),
        seed=args.seed,
        slot_delay=args.slot_delay,
        deterministic_ids=args.deterministic_ids,
    )
    limits: dict[str, Any] = {
        field: _limit(args, field, getattr(config, field)) for field, _ in _LIMITS
    }
    return attrs.evolve(config, **limits)


def _limit(args: argparse.Namespace, name: str, default: int) -> int:
    value: int | None = getattr(args, name)
    if value is None:
        return default
    if value < 1:
        raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    return value


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
