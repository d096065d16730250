"""Where a connection goes and what it asks for: URL parsing and extra request headers.

Shared by the WebSocket upgrade and the plain HTTP requests; this module never imports trio.
"""

from __future__ import annotations

__all__: list[str] = []

import re
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlsplit

import attrs

from simtrio.errors import InvalidParams, excerpt

if TYPE_CHECKING:
    from collections.abc import Sequence


@attrs.frozen
class Endpoint:
    """A parsed ``ws(s)://`` or ``http(s)://`` URL, ready for a socket and a request line."""

    secure: bool
    host: str
    """Host to resolve and to verify the certificate against (IPv6 without brackets)."""
    port: int
    target: str
    """Request target: path (``/`` when empty) plus query."""
    host_header: str
    display: str
    """``scheme://host[:port]/path`` for messages: no user info, no query."""


_BAD_HOST_CHARS: Final = frozenset(' "<>\\^`{|}')
"""Characters no host name or address may hold (besides whitespace and control characters)."""


def parse_url(url: str, *, plain: str, secure: str) -> Endpoint:
    """Split ``url`` for one of two schemes (e.g. ``ws``/``wss``); raises ``InvalidParams``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidParams(f"invalid URL {excerpt(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in (plain, secure):
        raise InvalidParams(
            f"invalid URL {excerpt(url)!r}: expected {plain}:// or {secure}:// scheme"
        )
    host = parts.hostname
    if not host:
        raise InvalidParams(f"invalid URL {excerpt(url)!r}: no host")
    if any(ch in _BAD_HOST_CHARS or not ch.isprintable() or ch.isspace() for ch in host):
        raise InvalidParams(f"invalid URL {excerpt(url)!r}: not a valid host name")
    is_secure = scheme == secure
    if port is None:
        port = 443 if is_secure else 80
    path = parts.path or "/"
    target = path + ("?" + parts.query if parts.query else "")
    # Non-ASCII or spaces cannot go on the request line; existing %XX escapes are kept.
    target = quote(target, safe="!#$%&'()*+,/:;=?@[]~")
    netloc = f"[{host}]" if ":" in host else host
    if port != (443 if is_secure else 80):
        netloc = f"{netloc}:{port}"
    display = f"{scheme}://{netloc}{quote(path, safe='!#$%&()*+,/:;=@[]~')}"
    return Endpoint(is_secure, host, port, target, netloc, display)


_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE: Final = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")

WEBSOCKET_RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
    }
)


def encode_headers(
    headers: Sequence[tuple[str, str]], *, reserved: frozenset[str] = WEBSOCKET_RESERVED_HEADERS
) -> list[tuple[bytes, bytes]]:
    """Validate and encode extra request headers.

    Checked up front so that an unusable value (say a key with a stray newline) fails with a
    message naming only the header, instead of an h11 error that quotes the value.
    """
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise InvalidParams(f"invalid header name {excerpt(name)!r}")
        if name.lower() in reserved:
            raise InvalidParams(f"header {name!r} is set by simtrio and cannot be overridden")
        if not _VALUE.fullmatch(value):
            raise InvalidParams(
                f"invalid value for header {name!r}: printable ASCII without surrounding "
                "whitespace expected"
            )
        out.append((name.encode("ascii"), value.encode("ascii")))
    return out
