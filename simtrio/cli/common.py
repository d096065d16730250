"""Pieces every command shares: where to connect, usage errors, Ctrl-C handling."""

from __future__ import annotations

__all__: list[str] = []

import os
import signal
import threading
import urllib.parse
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from simtrio.core.groups import find_leaf, only
from simtrio.errors import SimtrioError
from simtrio.wire.urls import normalize_control_url

if TYPE_CHECKING:
    import argparse
    from collections.abc import Generator, Iterator, Mapping

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]  # pyright: ignore[reportPrivateUsage]
    """What ``add_subparsers`` returns; each command module's ``add_parser`` takes one."""

ENV_URL = "SIMULATOR_URL"
ENV_API_KEY = "SIMULATOR_API_KEY"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""Stopped by SIGINT (128 + 2)."""
EXIT_TERMINATED = 143
"""Stopped by SIGTERM (128 + 15)."""


@attrs.frozen
class CommandInfo:
    """A command's name and what ``--help`` says of it; each command module has one."""

    name: str
    help: str
    description: str | None = None
    usage: str | None = None


class UsageError(Exception):
    """Arguments that parse but make no sense together; ``main`` exits with status 2."""


def add_json_flag(parser: argparse.ArgumentParser, output: str) -> None:
    """``--json``: the command prints ``output`` (e.g. "a JSON array") instead of a table."""
    parser.add_argument("--json", action="store_true", help=f"print {output}")


def add_target_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--url",
        help=f"control URL of the simulator (default: ${ENV_URL}); a bare host means "
        "wss://HOST/backtest",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key sent as X-API-Key (default: ${ENV_API_KEY}); never printed",
    )
    group.add_argument(
        "--embedded",
        action="store_true",
        help="use an in-process reference server with a synthetic chain (never implied)",
    )


@attrs.frozen
class Target:
    """Where a command connects; ``url`` is None for the embedded server."""

    url: str | None
    api_key: str = attrs.field(repr=False)

    @property
    def embedded(self) -> bool:
        return self.url is None


def resolve_target(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Target:
    """``--url`` beats ``$SIMULATOR_URL``; ``--embedded`` wins over the env.

    With neither a URL nor ``--embedded`` there is no server to talk to: a usage error, never a
    silent run against the synthetic embedded chain.
    """
    env = os.environ if env is None else env
    api_key: str = args.api_key if args.api_key is not None else env.get(ENV_API_KEY, "")
    url = control_url(args, env.get(ENV_URL), f" or set ${ENV_URL}")
    if url is None:
        return Target(None, api_key)
    problem = url_problem(url)
    if problem is not None:
        raise UsageError(f"--url {display_url(url)!r}: {problem}")
    return Target(url, api_key)


def control_url(args: argparse.Namespace, fallback: str | None, where: str) -> str | None:
    """The normalised ``--url``, else ``fallback``; None (embedded) with ``--embedded``.

    No URL and no ``--embedded`` is a usage error (``where`` follows ``--url URL`` in it, naming
    what else gives a URL); the
    embedded server is never implied.
    """
    if args.embedded:
        if args.url is not None:
            raise UsageError("--embedded and --url are mutually exclusive")
        return None
    url = args.url if args.url is not None else fallback or None
    if url is None:
        raise UsageError(
            f"no server given: pass --url URL{where} "
            "(or --embedded for the synthetic reference server)"
        )
    if not url.strip():
        raise UsageError("--url must not be empty")
    return normalize_control_url(url.strip())


def url_problem(url: str) -> str | None:
    """Why a normalised control URL cannot be connected to, or None when it looks usable."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("ws", "wss"):
        return "the scheme must be ws:// or wss:// (or give a bare host)"
    host = parts.hostname or ""
    if not host or any(c.isspace() for c in url) or port == 0:
        return "not a URL with a host (and an optional port)"
    return None


class Interrupt:
    """Turns SIGINT and SIGTERM into cancellation instead of a traceback or a sudden death.

    The first signal cancels the innermost *soft* scope, if one is active, so the enclosing
    ``async with`` blocks are left normally (a managed session then sends its close, a recording
    ends as cancelled); with no soft scope active, or on a second signal, the hard scope is
    cancelled and everything stops. ``exit_status`` is 130 after SIGINT and 143 after SIGTERM.

    Once the run is *settled* (every session's driver has finished before any signal), the
    outcome is fixed: the first signal after that cancels nothing and does not make the run
    interrupted, so teardown (closing sessions, ending the recording) goes on as for a finished
    run; a further signal still stops everything at once, and then the run is interrupted.
    """

    def __init__(self) -> None:
        self.hard = trio.CancelScope()
        self.requested = False
        self.signal: int | None = None
        """The first signal received (None: stopped some other way, or not at all)."""
        self._soft: list[trio.CancelScope] = []
        self.settled = False
        """Every session finished before any signal: the first signal no longer stops the run."""
        self._late = False

    @property
    def exit_status(self) -> int:
        return EXIT_TERMINATED if self.signal == signal.SIGTERM else EXIT_INTERRUPTED

    @contextmanager
    def soft_scope(self) -> Generator[trio.CancelScope]:
        """A scope the first signal cancels (instead of the whole command)."""
        with trio.CancelScope() as scope:
            self._soft.append(scope)
            if self.requested:
                scope.cancel()
            try:
                yield scope
            finally:
                self._soft.remove(scope)

    def settle(self) -> None:
        """Mark the run's sessions as finished; without an earlier signal, the outcome is fixed."""
        if not self.requested:
            self.settled = True

    def trigger(self, signum: int = signal.SIGINT) -> None:
        if self.signal is None:
            self.signal = signum
        if self.settled and not self.requested and not self._late:
            # The run has already finished: teardown goes on, the outcome stays.
            self._late = True
            return
        if not self.requested and not self.settled and self._soft:
            self.requested = True
            self._soft[-1].cancel()
            return
        self.requested = True
        self.hard.cancel()

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Trigger on every SIGINT or SIGTERM until cancelled (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            task_status.started()
            await trio.sleep_forever()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.trigger(signum)


def iter_csv(values: list[str] | None) -> Iterator[str]:
    """Items of repeatable comma-separated options (``--x a,b --x c``)."""
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if item:
                yield item


def simtrio_error_of(exc: BaseException) -> SimtrioError | None:
    """The simtrio error ``exc`` is, or the first of the simtrio errors that alone make up its
    (nested) groups; else None."""
    return find_leaf(exc, SimtrioError) if only(exc, SimtrioError) else None


def display_url(url: str) -> str:
    """``url`` as printed and written to files: no user info, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
