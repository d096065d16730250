"""A context variable set for the length of a ``with`` block, then put back."""

from __future__ import annotations

__all__: list[str] = []

from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Generator
    from contextvars import ContextVar

_T = TypeVar("_T")


@contextmanager
def scoped(var: ContextVar[_T], value: _T) -> Generator[None]:
    """``var`` is ``value`` inside the block (for the task and the tasks it starts meanwhile)."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)
