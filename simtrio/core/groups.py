"""Looking inside exception groups: the one place simtrio takes nurseries' groups apart.

Nurseries wrap whatever their tasks raise in (possibly nested) ``BaseExceptionGroup``\\ s. Callers
of simtrio want the one error that ended a block, not the group around it; these helpers find it.
Plain Python: the types to look for (or to look past, such as ``trio.Cancelled``) are arguments.
"""

from __future__ import annotations

__all__: list[str] = []

from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

_E = TypeVar("_E", bound=BaseException)


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """Every exception in ``exc`` that is not a group, depth first; ``exc`` alone if it is none."""
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        for inner in group.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def first_leaf(exc: BaseException) -> BaseException:
    """The first leaf of ``exc`` (``exc`` itself unless it is a group)."""
    return next(leaves(exc), exc)


def find_leaf(exc: BaseException, cls: type[_E] | tuple[type[_E], ...]) -> _E | None:
    """``exc`` itself, or its first leaf, that is an instance of ``cls``; None if there is none."""
    for leaf in leaves(exc):
        if isinstance(leaf, cls):
            return leaf
    return None


def only(exc: BaseException, cls: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """Whether every leaf of ``exc`` is an instance of ``cls`` (as a cancelled nursery's group)."""
    return all(isinstance(leaf, cls) for leaf in leaves(exc))


def sole_leaf(
    exc: BaseException,
    *,
    prefer: type[BaseException] | tuple[type[BaseException], ...] = (),
    ignoring: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> BaseException | None:
    """The one exception that ``exc`` stands for, or None when it stands for several.

    That is its lone leaf; failing that, the lone leaf of type ``prefer`` when every other leaf
    is of type ``ignoring`` (a failure next to the cancellations it caused). One exception
    raised from two tasks (a stored failure re-raised, say) counts once.
    """
    found: list[BaseException] = []
    for leaf in leaves(exc):
        if not any(leaf is seen for seen in found):
            found.append(leaf)
    if len(found) == 1:
        return found[0]
    preferred = [leaf for leaf in found if prefer and isinstance(leaf, prefer)]
    if len(preferred) == 1 and all(
        leaf is preferred[0] or (ignoring and isinstance(leaf, ignoring)) for leaf in found
    ):
        return preferred[0]
    return None


@contextmanager
def unwrapped(
    *,
    prefer: type[BaseException] | tuple[type[BaseException], ...] = (),
    ignoring: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> Generator[None]:
    """Let the one exception a group stands for (:func:`sole_leaf`) out instead of the group.

    The exception keeps its own ``__context__``; a group that stands for several is re-raised
    as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = sole_leaf(group, prefer=prefer, ignoring=ignoring)
        if leaf is None:
            raise
        context = leaf.__context__
        try:
            raise leaf
        finally:
            leaf.__context__ = context
            del leaf, group
