"""The exception hierarchy: small and flat, so ``except`` clauses stay simple.

Every boundary (sockets, wsproto, zstd, JSON) maps foreign exceptions onto these types, so user
code never has to catch an ``OSError`` or a ``zstandard.ZstdError`` coming out of simtrio.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "ConnectionClosed",
    "ContinueSendFailed",
    "ControlClosed",
    "ControlFailed",
    "CreateFailed",
    "InvalidParams",
    "ManagedSessionError",
    "ProtocolError",
    "RemoteError",
    "RequestTimeout",
    "RpcError",
    "RpcHttpError",
    "SimtrioError",
    "SubscriptionFailed",
    "excerpt",
]

from typing import TYPE_CHECKING, cast, overload

if TYPE_CHECKING:
    from simtrio.wire.backtest_errors import BacktestError
    from simtrio.wire.jsontext import JsonValue

_EXCERPT_LIMIT = 80


def excerpt(data: str | bytes, limit: int = _EXCERPT_LIMIT) -> str:
    """A short, printable excerpt of untrusted input for error messages.

    Only the head of the input is kept (so a huge frame never ends up in a log), and control
    characters are escaped so the excerpt cannot forge log lines.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        text = bytes(data[: limit + 1]).decode("utf-8", errors="replace")
    else:
        text = data[: limit + 1]
    cut = len(text) > limit
    text = "".join(ch if ch.isprintable() else _escape(ch) for ch in text[:limit])
    return text + ("..." if cut else "")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class SimtrioError(Exception):
    """Base class of every error simtrio raises."""


class InvalidParams(SimtrioError, ValueError):
    """Parameters that cannot form a valid request (raised before any I/O)."""


class ConnectError(SimtrioError):
    """A connection could not be opened: refused, timed out, or the upgrade was rejected.

    ``status`` is the HTTP status of a rejected upgrade, if there was one. ``fatal`` marks the
    failures that retrying cannot fix (HTTP 401/403, a TLS certificate failure, an unusable
    URL); reconnecting components stop on them instead of backing off.
    """

    def __init__(self, message: str, *, status: int | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.fatal = fatal


class RequestTimeout(SimtrioError, TimeoutError):
    """A per-call deadline expired before the awaited response arrived."""


class RemoteError(SimtrioError):
    """The server answered with an ``error`` response; ``.error`` is the ``BacktestError``."""

    def __init__(self, error: BacktestError) -> None:
        super().__init__(f"server error: {error}")
        self.error = error


class ConnectionClosed(SimtrioError):
    """The connection ended while a call was waiting on it."""


class ProtocolError(SimtrioError):
    """Malformed or oversize input from the peer.

    ``excerpt`` holds a short, escaped head of the offending input, never the whole of it.
    """

    def __init__(self, message: str, *, data: str | bytes | None = None) -> None:
        self.excerpt = excerpt(data) if data is not None else None
        if self.excerpt is not None:
            message = f"{message}: <{self.excerpt}>"
        super().__init__(message)


class ManagedSessionError(SimtrioError):
    """Base class of the errors of managed sessions and subscriptions."""


class CreateFailed(ManagedSessionError):
    """A managed create could not complete (fatal condition, or reconnect budget spent)."""


class ControlClosed(ManagedSessionError):
    """The control stream has ended: ``Completed`` was delivered, or the session was closed."""


class ControlFailed(ManagedSessionError):
    """The control plane gave up; ``.error`` is the terminal ``BacktestError``, if any."""

    def __init__(self, message: str, *, error: BacktestError | None = None) -> None:
        super().__init__(message)
        self.error = error


class SubscriptionFailed(ManagedSessionError):
    """A data-plane subscription gave up, or the completion drain stalled."""


class ContinueSendFailed(ManagedSessionError):
    """A continue could not be queued because the control task has ended."""


class RpcError(SimtrioError):
    """A per-session JSON-RPC call failed: the server's ``error`` object, or no usable reply.

    Built as ``RpcError(code, message, data)`` from a JSON-RPC error object, or as
    ``RpcError(message)`` for a failure that has no code (a session without an RPC endpoint,
    say); ``code`` and ``data`` are None then.
    """

    @overload
    def __init__(self, message: str, /) -> None: ...
    @overload
    def __init__(self, code: int, message: str, data: JsonValue = None, /) -> None: ...

    def __init__(self, *args: object) -> None:
        code: int | None = None
        data: JsonValue = None
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            code = args[0]
            message = str(args[1]) if len(args) > 1 else ""
            data = cast("JsonValue", args[2]) if len(args) > 2 else None
        else:
            message = str(args[0]) if args else ""
        super().__init__(message if code is None else f"rpc error {code}: {excerpt(message)}")
        self.code = code
        self.message = message
        self.data = data


class RpcHttpError(RpcError):
    """The RPC endpoint answered with an HTTP status other than 200; ``status`` holds it."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
