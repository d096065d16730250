"""A session's response log: its numbered control-plane responses, the newest ones retained.

A control connection streams from the log with a cursor, so an attach is just a new cursor
(replay = entries above ``last_sequence``) and nothing is ever pushed at a socket.
"""

from __future__ import annotations

__all__: list[str] = []

from collections import deque
from typing import TypeAlias

from simtrio.server.broadcast import Signal
from simtrio.wire import types as wire
from simtrio.wire.codec import encode_response
from simtrio.wire.types import (
    Error,
    SlotNotification,
    Success,
)

Emitted: TypeAlias = (
    wire.ReadyForContinue
    | SlotNotification
    | wire.Paused
    | wire.DiscoveryBatch
    | Error
    | Success
    | wire.Completed
    | wire.Status
)
"""What a session emits: valid both as a top-level response and as a session event."""


class ResponseLog:
    """A session's numbered responses, the newest ``cap`` of them retained.

    Each entry also remembers how many bytes (encoded, unnumbered) the log held before it,
    so the size of any tail of the log is one subtraction.
    """

    def __init__(self, cap: int) -> None:
        self._entries: deque[tuple[int, Emitted, int]] = deque(maxlen=cap)
        self.last_seq = 0
        self.total_bytes = 0
        """Bytes of every response appended so far (retained or not)."""
        self.signal = Signal()

    def append(self, response: Emitted) -> int:
        self.last_seq += 1
        self._entries.append((self.last_seq, response, self.total_bytes))
        self.total_bytes += len(encode_response(response))
        self.signal.notify()
        return self.last_seq

    def after(self, seq: int) -> tuple[int, Emitted] | None:
        """The first retained entry numbered above ``seq``."""
        if not self._entries:
            return None
        index = max(seq + 1 - self._entries[0][0], 0)
        if index >= len(self._entries):
            return None
        entry = self._entries[index]
        return entry[0], entry[1]

    def between(self, after: int, upto: int) -> list[tuple[int, Emitted]]:
        """Retained entries numbered in ``(after, upto]``."""
        return [(entry[0], entry[1]) for entry in self._entries if after < entry[0] <= upto]

    def bytes_after(self, seq: int) -> int:
        """Bytes of the responses numbered above ``seq`` (all retained ones if it is older)."""
        if not self._entries:
            return 0
        index = max(seq + 1 - self._entries[0][0], 0)
        if index >= len(self._entries):
            return 0
        return self.total_bytes - self._entries[index][2]
