"""Reconnect timing: the backoff formula and the bookkeeping of one reconnecting component.

Both are pure. The shell passes the current time in and gets a delay (or "give up") back, so
every schedule can be tested without a clock and replayed from a seeded ``random.Random``.
"""

from __future__ import annotations

__all__: list[str] = []

import math
from typing import TYPE_CHECKING, Any, Literal

import attrs

from simtrio.errors import InvalidParams

if TYPE_CHECKING:
    import random

MIN_JITTERED_DELAY = 0.010
"""Floor of a fully jittered delay, so a retry never spins at zero."""


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise InvalidParams(f"{attribute.name} must be > 0, got {value!r}")


def _at_least_one(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 1:
        raise InvalidParams(f"{attribute.name} must be >= 1, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise InvalidParams(f"{attribute.name} must be >= 0, got {value!r}")


def _jitter_mode(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("full", "none"):
        raise InvalidParams(f"{attribute.name} must be 'full' or 'none', got {value!r}")


def _retries(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParams(f"{attribute.name} must be None or an int >= 0, got {value!r}")


@attrs.frozen
class BackoffPolicy:
    """Exponential backoff with an optional full jitter (protocol §8.3).

    ``max_retries`` caps the retries of one outage; ``reset_after`` is how long a connection must
    stay healthy before the outage it ended is over: the next loss starts a new one, again from
    ``initial`` (see :class:`ReconnectState`).
    """

    initial: float = attrs.field(default=0.25, validator=_positive)
    max: float = attrs.field(default=30.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_at_least_one)
    jitter: Literal["full", "none"] = attrs.field(default="full", validator=_jitter_mode)
    max_retries: int | None = attrs.field(default=None, validator=_retries)
    reset_after: float = attrs.field(default=30.0, validator=_non_negative)

    def ceiling(self, attempt: int) -> float:
        """``min(max, initial * multiplier**attempt)``, without overflowing for huge attempts."""
        if attempt <= 0:
            return min(self.max, self.initial)
        if self.multiplier == 1:
            return min(self.max, self.initial)
        # Decide in log space first: multiplier**attempt overflows a float long before an
        # int attempt counter could.
        if attempt * math.log(self.multiplier) >= math.log(self.max) - math.log(self.initial):
            return self.max
        try:
            return min(self.max, self.initial * self.multiplier**attempt)
        except OverflowError:  # rounding right at the boundary
            return self.max

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        ceiling = self.ceiling(attempt)
        if self.jitter == "none":
            return ceiling
        return max(MIN_JITTERED_DELAY, rng.uniform(0.0, ceiling))


class ReconnectState:
    """Outage and attempt bookkeeping of one reconnecting component (protocol §8.3, §8.4).

    The shell reports what happened and asks for the next delay::

        state.attempt_started(now)          # before every connection attempt
        state.connected()                   # the transport connection opened (upgrade accepted)
        state.connection_up(now)            # handshake done: the component is UP
        state.attempt_failed(now)           # an attempt failed before UP
        state.connection_lost(now)          # an UP connection was lost
        delay = state.next_delay(now, rng)  # None: give up

    An outage begins with the first loss (or, for a component never UP, with its first attempt)
    and ends only once a connection has stayed healthy for ``policy.reset_after``: a
    connection that comes UP and fails sooner (a peer that accepts and then sends garbage)
    does not end it. Healthy means UP until the loss, or until the ``healthy_until`` the shell
    reports with it (the moment a stalled connection stopped making progress). The outage is
    bounded by ``max_total`` (None: unbounded); ``max_retries`` counts the retries within it,
    and the backoff exponent grows through it. So whatever the mix of refused attempts, short
    connections and stalls, the component gives up at the latest ``reset_after`` after the
    budget ran out (a connection UP at that moment gets that long to prove itself).

    ``first_max_total``, when set, bounds the outage of a component that has not yet opened a
    single transport connection (:meth:`connected`): a server that refuses the very first
    connection is most likely not there at all, so it is retried only briefly.
    """

    __slots__ = (
        "_attempt",
        "_connected",
        "_gave_up",
        "_outage_start",
        "_retries",
        "_up_since",
        "first_max_total",
        "max_total",
        "policy",
    )

    def __init__(
        self,
        policy: BackoffPolicy,
        max_total: float | None = None,
        *,
        first_max_total: float | None = None,
    ) -> None:
        if max_total is not None and not max_total > 0:
            raise InvalidParams(f"max_total must be None or > 0, got {max_total!r}")
        if first_max_total is not None and not first_max_total > 0:
            raise InvalidParams(f"first_max_total must be None or > 0, got {first_max_total!r}")
        self.policy = policy
        self.max_total = max_total
        self.first_max_total = first_max_total
        self._attempt = 0
        self._retries = 0
        self._up_since: float | None = None
        self._outage_start: float | None = None
        self._connected = False
        self._gave_up = False

    @property
    def attempt(self) -> int:
        """Backoff exponent the next retry will use."""
        return self._attempt

    @property
    def is_up(self) -> bool:
        return self._up_since is not None

    @property
    def gave_up(self) -> bool:
        """True once :meth:`next_delay` returned None; the state is final then."""
        return self._gave_up

    @property
    def outage_start(self) -> float | None:
        """When the current outage began; None when no outage is open.

        A connection that is UP but has not yet stayed healthy for ``reset_after`` leaves the
        outage open.
        """
        return self._outage_start

    @property
    def budget(self) -> float | None:
        """The outage bound that applies now (None: unbounded)."""
        first = self.first_max_total
        if first is None or self._connected:
            return self.max_total
        if self.max_total is None:
            return first
        return min(first, self.max_total)

    def attempt_started(self, now: float) -> None:
        """An attempt begins; the first one of a component never UP starts the outage clock."""
        if self._up_since is None and self._outage_start is None:
            self._outage_start = now

    def connected(self) -> None:
        """A transport connection opened: ``first_max_total`` no longer applies."""
        self._connected = True

    def attempt_failed(self, now: float) -> None:
        """An attempt failed before the component came UP."""
        if self._up_since is not None:
            # A failure reported for a connection that was already UP is a loss.
            self.connection_lost(now)
            return
        if self._outage_start is None:
            self._outage_start = now

    def connection_up(self, now: float) -> None:
        """The handshake completed: the component is UP (the outage ends once it proves healthy).

        Coming UP without an attempt reported first opens an outage here, so a connection that
        never proves itself is still bounded by the budget.
        """
        self._up_since = now
        self._connected = True
        if self._outage_start is None:
            self._outage_start = now

    def healthy_for(self, now: float, healthy_until: float | None = None) -> float:
        """How long the current UP connection has been healthy (0 when not UP)."""
        up_since = self._up_since
        if up_since is None:
            return 0.0
        until = now if healthy_until is None else min(now, healthy_until)
        return max(0.0, until - up_since)

    def connection_lost(self, now: float, *, healthy_until: float | None = None) -> None:
        """An UP connection was lost.

        If it stayed healthy for ``reset_after`` (until ``healthy_until`` when given: the
        moment it stopped making progress, else until ``now``), the old outage is over: a new
        one starts now with a fresh backoff exponent and retry count. Otherwise the old outage
        simply goes on.
        """
        if self._up_since is None:
            self.attempt_failed(now)
            return
        if self.healthy_for(now, healthy_until) >= self.policy.reset_after:
            self._attempt = 0
            self._retries = 0
            self._outage_start = now
        elif self._outage_start is None:  # pragma: no cover - connection_up opens one
            self._outage_start = now
        self._up_since = None

    def deadline(self) -> float | None:
        """When the current outage exhausts its budget; None when unbounded or no outage is open."""
        budget = self.budget
        if budget is None or self._outage_start is None:
            return None
        return self._outage_start + budget

    def remaining(self, now: float) -> float | None:
        """Seconds left of the outage budget (>= 0), to bound a single attempt; None: no bound."""
        deadline = self.deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - now)

    def next_delay(self, now: float, rng: random.Random) -> float | None:
        """Delay before the next retry, or None to give up (budget or retries spent).

        Each call that returns a delay counts one retry. The delay never reaches past the
        outage budget, so the last retry happens at its end rather than after it.
        """
        if self._gave_up:
            return None
        if self._up_since is not None:
            raise RuntimeError("next_delay() while the connection is up")
        if self._outage_start is None:
            self._outage_start = now
        max_retries = self.policy.max_retries
        if max_retries is not None and self._retries >= max_retries:
            self._gave_up = True
            return None
        delay = self.policy.delay(self._attempt, rng)
        budget = self.budget
        if budget is not None:
            left = self._outage_start + budget - now
            if left <= 0:
                self._gave_up = True
                return None
            delay = min(delay, left)
        self._attempt += 1
        self._retries += 1
        return delay
