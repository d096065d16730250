"""The data-plane barrier: what a session's subscriptions have provably received.

A server keeps only the data-plane events of its last few slots (100 for the reference server)
for replay. A session whose control plane runs on while a data connection is stalled or
half-open would leave that subscription's replay with a hole. So every data connection carries
*probes*: a WebSocket Ping whose payload names a slot the session has reached (the control
plane's, or for a standalone subscription the session RPC's ``getSlot``).

A slot *proven* here means: every event of a slot below it has been handed to the consumer.
Its source (:class:`Proofs`) is a probe's Pong, but only once confirmed: a server may answer a
Ping ahead of notifications it still owes (the reference server answers Pings from its reader),
so a Pong on its own is a *claim*. The Pong of the next probe on the same connection -- a Ping
sent only after the claim's Pong arrived -- confirms it, unless a notification older than the
claim arrived in between. A server that still owed something below the claim would have had to
send none of it for a whole round trip while answering Pings.

A notification older than a claim withdraws the claim (it was early); one older than the proof
lowers the proof to it.

The rules, kept free of I/O:

* a probe goes out once the session is half a window past the last proof
  (:func:`probe_due`), at most one at a time per connection; a claim that is not confirmed yet
  leaves the proof behind, so the next probe, which confirms it, follows at once;
* a continue is held back only while some subscription's proven slot lags the control plane's
  slot by more than ``window`` slots (:func:`lags_behind`); the healthy path never waits for a
  Pong;
* a ping with no inbound byte at all after it for ``pong_timeout`` seconds means the
  connection is stalled (:class:`PingWatch`), whatever the keepalive deadline says;
* a re-subscription whose first missing slot is already older than the server's retention may
  have lost notifications: that is a gap (:func:`gap_between`), reported, never skipped.
"""

from __future__ import annotations

__all__: list[str] = []

import math
from typing import Final

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


class Proofs:
    """One subscription manager's proof: what is proven, and the claim not yet confirmed.

    ``proven`` only ever counts evidence that cannot be early (see the module docstring);
    ``claim`` is the last probe answer of the current connection, which the next one confirms.
    ``ceiling`` is the highest of the two: a newly delivered notification below it shows that
    something was claimed too early (:meth:`withdraw`).
    """

    __slots__ = ("ceiling", "claim", "proven")

    def __init__(self) -> None:
        self.proven: int | None = None
        self.claim: int | None = None
        self.ceiling: float = -math.inf

    def __repr__(self) -> str:
        return f"<Proofs proven={self.proven} claim={self.claim}>"

    def connection_changed(self) -> None:
        """A new connection: a claim the old one made can never be confirmed."""
        self.claim = None
        self._update_ceiling()

    def answered(self, slot: int) -> bool:
        """A probe's Pong for ``slot``, every message before it handed over.

        It confirms the claim before it on the same connection (that probe's Pong had arrived
        before this probe was sent) and becomes the new claim. True when ``proven`` rose.
        """
        claim = self.claim
        self.claim = slot
        rose = False
        if claim is not None:
            rose = self._raise(claim)
        self._update_ceiling()
        return rose

    def withdraw(self, slot: int) -> bool:
        """A new notification of ``slot``, below the ceiling, was delivered.

        A claim above it was early and is dropped; a proof above it (a server that broke the
        rules the proof relies on) falls back to it. True when ``proven`` fell.
        """
        if self.claim is not None and slot < self.claim:
            self.claim = None
        fell = self.proven is not None and slot < self.proven
        if fell:
            self.proven = slot
        self._update_ceiling()
        return fell

    def _raise(self, slot: int) -> bool:
        if self.proven is None or slot > self.proven:
            self.proven = slot
            return True
        return False

    def _update_ceiling(self) -> None:
        values = [x for x in (self.proven, self.claim) if x is not None]
        self.ceiling = max(values) if values else -math.inf
