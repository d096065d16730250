"""The client side of the WebSocket opening handshake (RFC 6455 §4.1), on h11, without I/O.

h11 parses the server's answer; once it accepts the switch to WebSocket, whatever bytes came
after the 101 response are h11's public ``trailing_data``, handed on to the frame reader as
they are. The request is the one wsproto builds, header for header. This module never imports
trio.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Final

import h11
from wsproto.utilities import generate_accept_token, generate_nonce

from simtrio.transport.events import Accepted, Closed, Rejected

if TYPE_CHECKING:
    from collections.abc import Sequence

REJECT_BODY_LIMIT: Final = 4096
"""Bytes of a rejected upgrade's body kept for the error message."""

_VERSION: Final = b"13"
_UPGRADE: Final = b"websocket"


class HandshakeError(Exception):
    """The server's answer to the upgrade is not one a client may accept."""


class UpgradeHandshake:
    """Build the upgrade request, then read the answer until it is decided.

    :meth:`receive` returns ``None`` while more bytes are needed, then one of
    :class:`~simtrio.transport.events.Accepted` (frame bytes that came with the 101 response
    are in :attr:`trailing`), :class:`~simtrio.transport.events.Rejected` (any other status,
    with the head of its body) or :class:`~simtrio.transport.events.Closed` (EOF before an
    answer). An answer that is not valid raises :class:`HandshakeError`, unless a rejection
    was already under way: then the rejection is what matters, even with its body cut short.
    """

    __slots__ = ("_body", "_h11", "_nonce", "_status", "trailing")

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._nonce = b""
        self._status = 0  # the status of a rejection under way
        self._body = bytearray()
        self.trailing = b""
        """Bytes that followed the 101 response (the first frames), once accepted."""

    def request(self, host: str, target: str, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        """The upgrade request; h11 raises ``LocalProtocolError`` for values it cannot send."""
        self._nonce = generate_nonce()
        upgrade = h11.Request(
            method=b"GET",
            target=target.encode("ascii"),
            headers=[
                (b"Host", host.encode("idna")),
                (b"Upgrade", _UPGRADE),
                (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Key", self._nonce),
                (b"Sec-WebSocket-Version", _VERSION),
                *headers,
            ],
        )
        return self._h11.send(upgrade) or b""

    def receive(self, data: bytes) -> Accepted | Rejected | Closed | None:
        """Process received bytes (``b""`` = EOF); see the class docstring."""
        rejecting = self._status != 0
        if not data and not rejecting:
            return Closed(None, "")
        answers: list[h11.Event] = []
        try:
            self._h11.receive_data(data)
            while True:
                event = self._h11.next_event()
                if (
                    event is h11.NEED_DATA
                    or event is h11.PAUSED
                    or isinstance(event, h11.ConnectionClosed)
                ):
                    break
                answers.append(event)  # type: ignore[arg-type]
                if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                    self._check_accept(event)
                    break
        except h11.RemoteProtocolError:
            if rejecting:
                return self._rejected()
            raise HandshakeError("Bad HTTP message") from None
        except HandshakeError:
            if rejecting:
                return self._rejected()
            raise
        for event in answers:
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    self.trailing = self._h11.trailing_data[0]
                    return Accepted()
                self._status = event.status_code
                return self._rejected()
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                room = REJECT_BODY_LIMIT - len(self._body)
                self._body += event.data[:room]
                if len(self._body) >= REJECT_BODY_LIMIT:
                    return self._rejected()
            elif isinstance(event, h11.EndOfMessage):
                return self._rejected()
        if not data:
            return self._rejected()
        return None

    @property
    def rejecting(self) -> bool:
        """A rejection's status arrived and its body is being read."""
        return self._status != 0

    def _rejected(self) -> Rejected:
        return Rejected(self._status, bytes(self._body))

    def _check_accept(self, response: h11.InformationalResponse) -> None:
        """The checks wsproto makes of a 101 response, with its messages."""
        connection: list[bytes] | None = None
        upgrade = b""
        accept: bytes | None = None
        protocol: bytes | None = None
        extensions: bytes | None = None
        for name, value in response.headers:
            if name == b"connection":
                connection = [token.strip() for token in value.split(b",")]
            elif name == b"upgrade":
                upgrade = value
            elif name == b"sec-websocket-accept":
                accept = value
            elif name == b"sec-websocket-protocol":
                protocol = value
            elif name == b"sec-websocket-extensions":
                extensions = value
        if connection is None or not any(token.lower() == b"upgrade" for token in connection):
            raise HandshakeError("Missing header, 'Connection: Upgrade'")
        if upgrade.lower() != _UPGRADE:
            raise HandshakeError(f"Missing header, 'Upgrade: {_UPGRADE.decode()}'")
        if accept != generate_accept_token(self._nonce):
            raise HandshakeError("Bad accept token")
        # Neither a subprotocol nor an extension was offered, so any the server names is
        # unrecognised.
        if protocol is not None:
            raise HandshakeError(f"unrecognized subprotocol {protocol.decode('ascii', 'replace')}")
        if extensions is not None:
            name = extensions.split(b",", 1)[0].split(b";", 1)[0].strip()
            raise HandshakeError(f"unrecognized extension {name.decode('ascii', 'replace')}")
