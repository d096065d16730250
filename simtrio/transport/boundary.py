"""Where foreign exceptions become :mod:`simtrio.errors` in the transport.

Sockets, TLS, h11 and trio's stream errors stop here. Each boundary of the transport (opening a
stream, the upgrade, an open connection, a plain HTTP request) says once, with
:class:`~simtrio.core.boundary.map_exceptions`, which exceptions it turns into which simtrio
error.
"""

from __future__ import annotations

__all__: list[str] = []


def reason(exc: BaseException) -> str:
    """An exception in words: an OS error's ``strerror``, else its text, else its type."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
