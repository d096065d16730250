"""Entry point of the ``simtrio`` command.

Every subcommand lives in its own module with ``INFO``, ``add_arguments`` and a
``command(args) -> int``; adding one is adding those to :data:`COMMANDS`. This module only
parses, dispatches and turns process-level conditions (usage errors, signals, a closed stdout
pipe, an unexpected failure) into exit statuses with one line on stderr: a traceback only with
``-v``.
"""

from __future__ import annotations

__all__: list[str] = []

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from simtrio.cli import compare, ranges, replay, run, runs, serve, summarize, sweep
from simtrio.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandInfo,
    UsageError,
    simtrio_error_of,
)
from simtrio.core.groups import first_leaf, only

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simtrio.cli.common import Subparsers


@attrs.frozen
class _Command:
    """What a command module provides, taken by name from the module that defines it."""

    INFO: CommandInfo
    add_arguments: Callable[[argparse.ArgumentParser], None]
    command: Callable[[argparse.Namespace], int]


COMMANDS: list[_Command] = [
    _Command(run.INFO, run.add_arguments, run.command),
    _Command(serve.INFO, serve.add_arguments, serve.command),
    _Command(ranges.INFO, ranges.add_arguments, ranges.command),
    _Command(runs.INFO, runs.add_arguments, runs.command),
    _Command(compare.INFO, compare.add_arguments, compare.command),
    _Command(summarize.INFO, summarize.add_arguments, summarize.command),
    _Command(replay.INFO, replay.add_arguments, replay.command),
    _Command(sweep.INFO, sweep.add_arguments, sweep.command),
]
"""The commands, in the order ``--help`` lists them."""

EXIT_BROKEN_PIPE = 141
"""What a shell reports for a process killed by SIGPIPE (128 + 13)."""


def _version() -> str:
    try:
        return metadata.version("simtrio")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="simtrio",
        description="Run and inspect Solana simulator backtests.",
        epilog="Environment: SIMULATOR_URL, SIMULATOR_API_KEY.",
    )
    parser.add_argument("--version", action="version", version=f"simtrio {_version()}")
    _add_verbose(parser, default=0)
    sub: Subparsers = parser.add_subparsers(  # pyright: ignore[reportAssignmentType]
        dest="command", metavar="COMMAND", parser_class=_CommandParser
    )
    for module in COMMANDS:
        info = module.INFO
        p = sub.add_parser(
            info.name, help=info.help, description=info.description, usage=info.usage
        )
        p.set_defaults(handler=module.command)
        module.add_arguments(p)
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


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one line (``prog: error: ...``) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _CommandParser(_Parser):
    """A command's parser: takes ``-v`` too, without resetting one given before the command.

    Nested commands (``runs list``) are made with the same class, so they take it as well.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_verbose(self, default=argparse.SUPPRESS)


def _configure_logging(verbosity: int) -> None:
    """Commands that draw on the console configure logging themselves, through it."""
    from simtrio.cli.console import configure_logging, stderr_console

    configure_logging(verbosity, stderr_console())


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    0 ok, 1 failed, 2 usage or unreadable input, 130 SIGINT, 143 SIGTERM, 141 closed stdout.
    """
    parser = build_parser()
    verbose = 0
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a usage error (status 2)
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        verbose = args.verbose
        _configure_logging(verbose)
        try:
            status: int = args.handler(args)
        except UsageError as exc:
            sub: argparse.ArgumentParser = getattr(args, "usage_parser", parser)
            print(f"{sub.prog}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except BaseExceptionGroup as group:
        if only(group, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        return _unexpected(group, verbose)
    except Exception as exc:
        return _unexpected(exc, verbose)
    finally:
        from simtrio.cli.console import reset_logging

        reset_logging()


def _unexpected(exc: BaseException, verbose: int) -> int:
    """A failure no command turned into a message: one line, the traceback with ``-v``."""
    error = simtrio_error_of(exc)
    if verbose > 0:
        logging.getLogger("simtrio.cli").error("unexpected failure", exc_info=exc)
    if error is not None:
        print(f"simtrio: error: {error}", file=sys.stderr)
    else:
        leaf = first_leaf(exc)
        print(
            f"simtrio: internal error: {type(leaf).__name__}: {leaf}"
            + ("" if verbose else " (run with -v for the traceback)"),
            file=sys.stderr,
        )
    return EXIT_FAILED


def entry() -> NoReturn:
    """The process's entry point: :func:`main`, then exit with its status.

    Once ``main`` has returned, the command has finished and its status, output and recording
    are final: SIGINT and SIGTERM are then ignored, so a signal arriving while the interpreter
    shuts down cannot kill the process with a status that contradicts them.
    """
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(status)


if __name__ == "__main__":
    entry()
