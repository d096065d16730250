"""One context manager for every boundary where a library's exceptions become simtrio's.

Each boundary (the transport's streams and upgrade, the reference server's requests, ...)
states once, with :class:`map_exceptions`, which exceptions it turns into which error, instead
of an ``except`` clause at each call. Pure Python: no trio, no I/O.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType


class map_exceptions:
    """An exception of one of ``types`` leaving the block is raised again as ``convert(exc)``.

    The new exception is chained to the old one (``raise ... from exc``), or not at all with
    ``chain=False`` (``from None``) where the old message could quote something secret or says
    nothing more. Anything else passes through untouched; ``types`` are ``Exception``
    subclasses, so cancellation and interrupts always do. One instance
    may be entered again and again (it keeps no state), so a hot path builds it once.
    """

    __slots__ = ("_chain", "_convert", "_types")

    def __init__(
        self,
        types: type[Exception] | tuple[type[Exception], ...],
        convert: Callable[[BaseException], Exception],
        *,
        chain: bool = True,
    ) -> None:
        self._types = types
        self._convert = convert
        self._chain = chain

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, self._types):
            return False
        mapped = self._convert(exc)
        if self._chain:
            raise mapped from exc
        raise mapped from None
