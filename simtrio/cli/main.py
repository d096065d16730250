"""Entry point of the ``simtrio`` command.

Every subcommand lives in its own module with ``add_parser`` and a ``command(args) -> int``;
this module only parses, dispatches and turns the few process-level conditions (usage errors,
Ctrl-C, a closed stdout pipe) into exit statuses without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any

from simtrio.cli import compare, ranges, replay, run, runs, serve, sweep
from simtrio.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EXIT_BROKEN_PIPE", "build_parser", "main"]

EXIT_BROKEN_PIPE = 141
"""What a shell reports for a process killed by SIGPIPE (128 + 13)."""


def _version() -> str:
    try:
        return metadata.version("simtrio")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simtrio",
        description="Run and inspect Solana simulator backtests.",
        epilog="Environment: SIMULATOR_URL, SIMULATOR_API_KEY.",
    )
    parser.add_argument("--version", action="version", version=f"simtrio {_version()}")
    _add_verbose(parser, default=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for module in (run, serve, ranges, runs, compare, replay, sweep):
        module.add_parser(sub)
    for sub_parser in sub.choices.values():
        # Nested parsers (``runs list``) set their own, which then win.
        sub_parser.set_defaults(usage_parser=sub_parser)
    return parser


def _add_verbose(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="log to stderr (-v: info, -vv: debug)",
    )


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: takes ``-v`` too, without resetting one given before the command.

    Nested commands (``runs list``) are made with the same class, so they take it as well.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_verbose(self, default=argparse.SUPPRESS)


def _configure_logging(verbosity: int) -> None:
    if verbosity <= 0:
        return
    logging.basicConfig(
        level=logging.DEBUG if verbosity > 1 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _only_interrupts(group: BaseExceptionGroup[BaseException]) -> bool:
    _, rest = group.split(KeyboardInterrupt)
    return rest is None


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 usage, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a usage error (status 2)
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        _configure_logging(args.verbose)
        try:
            status: int = args.handler(args)
        except UsageError as exc:
            sub: argparse.ArgumentParser = getattr(args, "usage_parser", parser)
            sub.print_usage(sys.stderr)
            print(f"{sub.prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        if _only_interrupts(group):
            return EXIT_INTERRUPTED
        raise
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
