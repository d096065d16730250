"""Where foreign exceptions enter the reference server, and what each becomes.

Every boundary maps what its library raises (trio streams and trio-websocket, solders and
LiteSVM, the JSON-RPC parameters of a request) in one place, with :class:`map_exceptions`,
instead of an ``except`` clause at each call. The tuples below name what each boundary
catches, once.
"""

from __future__ import annotations

__all__: list[str] = []

import binascii
from typing import TYPE_CHECKING, Final

import trio
import trio_websocket

from simtrio.core.boundary import map_exceptions as _MapExceptions

if TYPE_CHECKING:
    from collections.abc import Callable

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


class map_exceptions(_MapExceptions):
    """Within the block, ``foreign`` exceptions are raised as ``make(exc)`` instead.

    The original is not chained (``from None``): what a library said is for the server's log
    and its own message, not for the peer. A single instance may be reused.
    """

    __slots__ = ()

    def __init__(
        self,
        foreign: type[Exception] | tuple[type[Exception], ...],
        make: Callable[[BaseException], Exception],
    ) -> None:
        super().__init__(foreign, make, chain=False)
