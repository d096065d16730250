"""Shared helpers for the plain-client tests: per-test bounds and secret checks."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ParamSpec

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

_P = ParamSpec("_P")

KEY = "sk-client-secret-4242"


def bounded(
    seconds: float = 2.0,
) -> Callable[[Callable[_P, Awaitable[None]]], Callable[_P, Awaitable[None]]]:
    """Run the test body under ``trio.fail_after`` (virtual seconds under ``autojump_clock``)."""

    def wrap(fn: Callable[_P, Awaitable[None]]) -> Callable[_P, Awaitable[None]]:
        @functools.wraps(fn)
        async def run(*args: _P.args, **kwargs: _P.kwargs) -> None:
            with trio.fail_after(seconds):
                await fn(*args, **kwargs)

        return run

    return wrap


def chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception reachable through its cause, context and group members."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([item.__cause__, item.__context__])
        todo.extend(getattr(item, "exceptions", ()))
    return seen


def assert_key_absent(exc: BaseException, key: str = KEY) -> None:
    for item in chain(exc):
        for text in (str(item), repr(item), *getattr(item, "__notes__", ())):
            assert key not in text
        for arg in item.args:
            assert key not in repr(arg)
