"""Addressing rules of the protocol (§1.1-§1.4): the control path, the API-key header and the
URL rewrites, as pure string functions shared by every client layer and the reference server.

They are deliberately string rewrites rather than full URL parsing: the server hands out
endpoints in a few fixed shapes, and a rewrite keeps host, port, path and query byte for byte.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import Final

from simtrio.errors import InvalidParams

CONTROL_PATH: Final = "/backtest"
"""Where the control WebSocket lives on a server; session endpoints sit below it."""
API_KEY_HEADER: Final = "X-API-Key"
"""The header that carries the API key on control upgrades and management requests."""
_BAD_HOST_CHARS = frozenset(' "<>\\^`{|}')
"""Characters no host name or address may hold (besides whitespace and control characters)."""
_WS_SCHEMES = ("ws://", "wss://")


def normalize_control_url(url: str) -> str:
    """Normalise a user-supplied control URL (§1.1); idempotent.

    ``ws(s)://`` URLs lose trailing slashes and gain ``/backtest`` unless they already end
    with it; a value without ``://`` is taken as a bare host for ``wss://``; anything else is
    returned unchanged so that connecting to it fails loudly instead of being guessed at.
    Trailing slashes are stripped from the part after the scheme only, so a degenerate
    ``ws://`` stays a ``ws://`` URL and the function stays idempotent.
    """
    if "://" not in url:
        url = "wss://" + url
    for scheme in _WS_SCHEMES:
        if url.startswith(scheme):
            rest = url[len(scheme) :].rstrip("/")
            if not ("/" + rest).endswith(CONTROL_PATH):
                rest += CONTROL_PATH
            return scheme + rest
    return url


def http_base_from_ws_url(url: str) -> str:
    """``scheme://host[:port]`` of a control URL with the scheme swapped to HTTP (§1.2).

    Used to resolve relative session endpoints and to reach the management endpoints, which
    live on the same host as the control WebSocket.
    """
    if url.startswith("wss://"):
        url = "https://" + url[len("wss://") :]
    elif url.startswith("ws://"):
        url = "http://" + url[len("ws://") :]
    marker = url.find("://")
    authority_start = marker + 3 if marker >= 0 else 0
    slash = url.find("/", authority_start)
    return url if slash < 0 else url[:slash]


def resolve_rpc_url(base: str, endpoint: str) -> str:
    """Absolute HTTP URL of a session's ``rpcEndpoint`` (§1.3).

    The hosted service reports relative endpoints; they are joined to ``base`` (the result of
    :func:`http_base_from_ws_url`). Absolute endpoints are trusted verbatim.
    """
    if endpoint.startswith(("http://", "https://")):
        return endpoint
    return base + "/" + endpoint.lstrip("/")


def http_to_ws_url(url: str) -> str:
    """The data-plane WebSocket URL of a session's HTTP endpoint (§1.4).

    Raises:
        InvalidParams: the URL is neither ``http://`` nor ``https://``.
    """
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    raise InvalidParams(
        f"cannot derive WebSocket URL from `{url}`: expected http:// or https:// scheme"
    )


def split_ws_url(url: str) -> tuple[bool, str, int, str]:
    """Split a ``ws(s)://`` URL into ``(secure, host, port, target)`` for opening a connection.

    ``host`` is bare (an IPv6 literal loses its brackets, ready for a socket connect); ``port``
    defaults to 80/443; ``target`` is the HTTP request target: the path (``/`` when there is
    none) plus the query, if any. A fragment is never sent, so it is dropped. User info is
    refused rather than silently ignored, because simtrio never sends it. A host holding
    whitespace, control characters or characters no host name can contain is refused too.

    Raises:
        InvalidParams: not a ``ws://``/``wss://`` URL, or an unusable host or port.
    """
    lowered = url[:6].lower()
    if lowered.startswith("wss://"):
        secure, rest = True, url[6:]
    elif lowered.startswith("ws://"):
        secure, rest = False, url[5:]
    else:
        raise InvalidParams(f"not a WebSocket URL (expected ws:// or wss://): `{url}`")

    rest = rest.split("#", 1)[0]
    end = len(rest)
    for sep in "/?":
        index = rest.find(sep)
        if 0 <= index < end:
            end = index
    authority, target = rest[:end], rest[end:]
    if not target.startswith("/"):
        target = "/" + target
    if "@" in authority:
        raise InvalidParams("WebSocket URLs with user info are not supported")

    default_port = 443 if secure else 80
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise InvalidParams(f"unterminated IPv6 literal in WebSocket URL `{url}`")
        host, after = authority[1:close], authority[close + 1 :]
        if after and not after.startswith(":"):
            raise InvalidParams(f"unexpected text after IPv6 literal in WebSocket URL `{url}`")
        port_text = after[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise InvalidParams(f"WebSocket URL without a host: `{url}`")
    if any(ch in _BAD_HOST_CHARS or not ch.isprintable() or ch.isspace() for ch in host):
        raise InvalidParams(f"invalid host in WebSocket URL `{url}`")
    if not port_text:
        return secure, host, default_port, target
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InvalidParams(f"invalid port in WebSocket URL `{url}`")
    return secure, host, int(port_text), target


def host_header(host: str, port: int, secure: bool) -> str:
    """The ``Host`` header value for a connection made from :func:`split_ws_url`'s parts.

    IPv6 literals get their brackets back and a default port is left out, as browsers do.
    """
    name = f"[{host}]" if ":" in host else host
    default_port = 443 if secure else 80
    return name if port == default_port else f"{name}:{port}"
