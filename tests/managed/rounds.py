"""Counting scheduling rounds: how often a busy sibling task got to run while some work ran."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


class Ticker:
    """Counts how often it gets to run: once per scheduling round that includes it."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await trio.lowlevel.checkpoint()


async def with_rounds(work: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """``work()``'s result, and how many scheduling rounds a busy sibling task got meanwhile."""
    ticker = Ticker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker.run)
        await trio.lowlevel.checkpoint()  # the ticker is now running
        before = ticker.ticks
        result = await work()
        during = ticker.ticks - before
        nursery.cancel_scope.cancel()
    return result, during
