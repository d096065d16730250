"""The data-plane barrier: what a session's subscriptions have provably received.

A server keeps only the data-plane events of its last few slots (100 for the reference server)
for replay. A session whose control plane runs on while a data connection is stalled or
half-open would leave that subscription's replay with a hole. So every data connection carries
*probes*: at each continue the client sends a WebSocket Ping whose payload names the control
plane's current slot (not at every continue: see :func:`probe_due`). The server answers a Ping after the notifications it had already queued
on that connection, so once its Pong arrived and every message before it was handed to the
consumer, the subscription has provably received everything up to that slot. (A server that
answers a Ping ahead of its backlog makes a proof early; the shell withdraws it when an older
notification arrives after it.)

The rules, kept free of I/O:

* a probe goes out once the control plane is half a window past the last proof
  (:func:`probe_due`), at most one at a time per connection;
* a continue is held back only while some subscription's proven slot lags the control plane's
  slot by more than ``window`` slots (:func:`lags_behind`); the healthy path never waits for a
  Pong;
* a ping with no inbound byte at all after it for ``pong_timeout`` seconds means the
  connection is stalled (:class:`PingWatch`), whatever the keepalive deadline says;
* a re-subscription whose first missing slot is already older than the server's retention may
  have lost notifications: that is a gap (:func:`gap_between`), reported, never skipped.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "PROBE_PREFIX",
    "PingWatch",
    "gap_between",
    "lags_behind",
    "probe_due",
    "probe_payload",
    "probe_slot",
]

PROBE_PREFIX: Final = b"slot:"
"""Ping payloads of probes start with this; the rest is the slot in ASCII digits."""


def probe_payload(slot: int) -> bytes:
    """The Ping payload of a probe for ``slot`` (well under the 125-byte Ping limit)."""
    return PROBE_PREFIX + str(slot).encode("ascii")


def probe_slot(payload: bytes) -> int | None:
    """The slot a Pong's payload proves, or None for any other Pong (a keepalive's)."""
    if not payload.startswith(PROBE_PREFIX):
        return None
    digits = payload[len(PROBE_PREFIX) :]
    if not digits or len(digits) > 20 or not digits.lstrip(b"-").isdigit():
        return None
    return int(digits)


def probe_due(wanted: int | None, proven: int | None, window: int) -> bool:
    """True when a probe for ``wanted`` is worth a Ping: half a window past the last proof.

    Probing at every step would cost a Ping and a Pong per step; half a window keeps the
    proof close enough that a healthy connection never holds a continue back.
    """
    if wanted is None:
        return False
    if proven is None:
        return True
    return wanted - proven >= max(1, window // 2)


def lags_behind(control_slot: int | None, proven: int | None, window: int) -> bool:
    """True when a continue must wait: ``proven`` is more than ``window`` slots behind.

    None on either side means nothing to compare yet (no slot seen; nothing to prove).
    """
    if control_slot is None or proven is None:
        return False
    return control_slot - proven > window


def gap_between(current_slot: int | None, needed_from: int | None, retained: int) -> bool:
    """True when replaying from ``needed_from`` may miss events the server no longer keeps.

    A server at ``current_slot`` keeps the events of slots above ``current_slot - retained``;
    anything older than that which the subscription still needed may be gone.
    """
    if current_slot is None or needed_from is None:
        return False
    return current_slot - needed_from >= retained


class PingWatch:
    """Whether a connection answered its pings: any inbound byte after a ping counts.

    ``sent(now)`` for each Ping; :meth:`overdue` holds once ``timeout`` seconds passed since
    the oldest ping with nothing received after it. Time the reader spent waiting for the
    consumer (it reads nothing then, Pongs included) does not count: pass its end as
    ``resumed_at``.
    """

    __slots__ = ("_since", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._since: float | None = None

    @property
    def waiting_since(self) -> float | None:
        """When the oldest unanswered ping was sent, if one is unanswered."""
        return self._since

    def sent(self, now: float) -> None:
        if self._since is None:
            self._since = now

    def observe(self, last_received: float) -> None:
        """Bytes arrived at ``last_received``: every ping sent before that was answered."""
        if self._since is not None and last_received >= self._since:
            self._since = None

    def deadline(self, resumed_at: float) -> float | None:
        """When the unanswered ping becomes overdue, or None."""
        if self._since is None:
            return None
        return max(self._since, resumed_at) + self.timeout

    def overdue(self, now: float, last_received: float, resumed_at: float) -> bool:
        self.observe(last_received)
        deadline = self.deadline(resumed_at)
        return deadline is not None and now >= deadline
