"""Where foreign exceptions enter the reference server, and what each becomes.

Every boundary maps what its library raises (trio streams and trio-websocket, solders and
LiteSVM, the JSON-RPC parameters of a request) in one place, with :class:`map_exceptions`,
instead of an ``except`` clause at each call. The tuples below name what each boundary
catches, once.
"""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Final

import trio
import trio_websocket

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = [
    "BAD_BASE64",
    "LITESVM_REJECTS",
    "PEER_GONE",
    "SOLDERS_REJECTS",
    "WEBSOCKET_GONE",
    "map_exceptions",
]

PEER_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError)
"""A TCP stream whose peer went away (or that was closed under the writer)."""
WEBSOCKET_GONE: Final = (trio_websocket.ConnectionClosed, *PEER_GONE)
"""A WebSocket that closed or broke."""
SOLDERS_REJECTS: Final = ValueError
"""What solders raises for bytes or text it cannot parse (keys, signatures, transactions)."""
BAD_BASE64: Final = (binascii.Error, ValueError)
"""What ``base64.b64decode(..., validate=True)`` raises."""
LITESVM_REJECTS: Final = Exception
"""What LiteSVM raises for an account it cannot take (a program that does not load); its
error type is not importable, so anything it raises there counts."""


class map_exceptions:
    """Within the block, ``foreign`` exceptions are raised as ``make(exc)`` instead.

    The original is not chained (``from None``): what a library said is for the server's log
    and its own message, not for the peer. A single instance may be reused.
    """

    __slots__ = ("_foreign", "_make")

    def __init__(
        self,
        foreign: type[BaseException] | tuple[type[BaseException], ...],
        make: Callable[[BaseException], BaseException],
    ) -> None:
        self._foreign = foreign
        self._make = make

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, self._foreign):
            raise self._make(exc) from None
