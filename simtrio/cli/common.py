"""Pieces every command shares: where to connect, usage errors, Ctrl-C handling."""

from __future__ import annotations

import os
import signal
import threading
import urllib.parse
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar, cast

import attrs
import trio

from simtrio.errors import SimtrioError
from simtrio.wire.urls import normalize_control_url

if TYPE_CHECKING:
    import argparse
    from collections.abc import Generator, Iterator, Mapping

__all__ = [
    "ENV_API_KEY",
    "ENV_URL",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Interrupt",
    "Target",
    "UsageError",
    "add_target_args",
    "display_url",
    "find_leaf",
    "iter_csv",
    "resolve_target",
    "simtrio_error_of",
]

_E = TypeVar("_E", bound=BaseException)

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]  # pyright: ignore[reportPrivateUsage]
    """What ``add_subparsers`` returns; each command module's ``add_parser`` takes one."""

ENV_URL = "SIMULATOR_URL"
ENV_API_KEY = "SIMULATOR_API_KEY"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Arguments that parse but make no sense together; ``main`` exits with status 2."""


def add_target_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--url",
        help=f"control URL of the simulator (default: ${ENV_URL}; none: embedded server)",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key sent as X-API-Key (default: ${ENV_API_KEY}); never printed",
    )
    group.add_argument(
        "--embedded",
        action="store_true",
        help="use an in-process reference server (the default when no URL is given)",
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
    """``--url`` beats ``$SIMULATOR_URL``; ``--embedded`` (or no URL at all) wins over the env."""
    env = os.environ if env is None else env
    api_key: str = args.api_key if args.api_key is not None else env.get(ENV_API_KEY, "")
    if args.embedded:
        if args.url is not None:
            raise UsageError("--embedded and --url are mutually exclusive")
        return Target(None, api_key)
    url = args.url if args.url is not None else env.get(ENV_URL) or None
    if url is not None:
        if not url.strip():
            raise UsageError("--url must not be empty")
        url = normalize_control_url(url.strip())
    return Target(url, api_key)


class Interrupt:
    """Turns SIGINT into cancellation instead of a ``KeyboardInterrupt`` traceback.

    The first Ctrl-C cancels the innermost *soft* scope, if one is active, so the enclosing
    ``async with`` blocks are left normally (a managed session then sends its close); with no
    soft scope active, or on a second Ctrl-C, the hard scope is cancelled and everything stops.
    """

    def __init__(self) -> None:
        self.hard = trio.CancelScope()
        self.requested = False
        self._soft: list[trio.CancelScope] = []

    @contextmanager
    def soft_scope(self) -> Generator[trio.CancelScope]:
        """A scope the first Ctrl-C cancels (instead of the whole command)."""
        with trio.CancelScope() as scope:
            self._soft.append(scope)
            if self.requested:
                scope.cancel()
            try:
                yield scope
            finally:
                self._soft.remove(scope)

    def trigger(self) -> None:
        if not self.requested and self._soft:
            self.requested = True
            self._soft[-1].cancel()
            return
        self.requested = True
        self.hard.cancel()

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Trigger on every SIGINT until cancelled (signals work in the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            task_status.started()
            await trio.sleep_forever()
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                self.trigger()


def iter_csv(values: list[str] | None) -> Iterator[str]:
    """Items of repeatable comma-separated options (``--x a,b --x c``)."""
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if item:
                yield item


def find_leaf(exc: BaseException, cls: type[_E]) -> _E | None:
    """``exc`` itself or the first exception of type ``cls`` inside (nested) groups."""
    if isinstance(exc, cls):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        for inner in group.exceptions:
            found = find_leaf(inner, cls)
            if found is not None:
                return found
    return None


def simtrio_error_of(exc: BaseException) -> SimtrioError | None:
    """The simtrio error ``exc`` is, or wraps alone (possibly in nested groups); else None."""
    if isinstance(exc, SimtrioError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        _, rest = group.split(SimtrioError)
        if rest is None:
            return find_leaf(group, SimtrioError)
    return None


def display_url(url: str) -> str:
    """``url`` as printed and written to files: no user info, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
