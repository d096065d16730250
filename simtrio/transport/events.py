"""What the engine hands up and what a frame reader may raise: the transport's vocabulary.

Both the engine (:mod:`simtrio.transport.engine`) and the frame readers
(:mod:`simtrio.transport.frames`, :mod:`simtrio.transport.wsproto_reader`) speak in these
terms, so neither has to reach into the other. This module never imports trio.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import Protocol, TypeAlias

import attrs

from simtrio.errors import excerpt


def _short(value: str | bytes) -> str:
    return repr(excerpt(value, 40))


@attrs.frozen
class Accepted:
    """The server accepted the upgrade; frames may follow in the same batch."""


@attrs.frozen
class Rejected:
    """The server answered the upgrade with another status; ``body`` is its head."""

    status: int
    body: bytes = attrs.field(repr=_short)


Text: TypeAlias = str
"""A complete (reassembled) Text message is the plain ``str``.

No wrapper: at control-plane rates one object more per message is measurable, and a thousand
of them alive at once set off the garbage collector.
"""

Binary: TypeAlias = bytes
"""A complete (reassembled) Binary message is the plain ``bytes``."""


@attrs.frozen
class PingReceived:
    """A Ping arrived; its Pong is already queued in the engine's ``data_to_send``."""

    payload: bytes


@attrs.frozen
class PongReceived:
    """A Pong arrived (keepalive evidence)."""

    payload: bytes


@attrs.frozen
class Closed:
    """The connection ended.

    ``code`` is the peer's close code (1005 for a Close frame without one), or ``None`` when the
    transport ended without a Close frame.
    """

    code: int | None
    reason: str


Event: TypeAlias = Accepted | Rejected | Text | Binary | PingReceived | PongReceived | Closed


class FrameError(Exception):
    """Malformed or oversize input found by a frame reader.

    ``code`` is the close code to send the peer; the engine queues that Close frame and raises
    :class:`~simtrio.errors.ProtocolError` in its place, so this never reaches a user.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class FrameReader(Protocol):
    """Receive side of an open connection.

    ``feed(data)`` (``b""`` meaning EOF) returns the complete messages and control events of
    ``data``, in order, reassembled and size-checked, ending with a :class:`Closed` once the
    connection is over (and returning nothing after that). ``on_control`` (given at
    construction) is called for every :class:`PingReceived` and :class:`Closed` so the engine
    can queue the reply. Malformed or oversize input raises :class:`FrameError`.
    """

    def feed(self, data: bytes) -> list[Event]: ...
