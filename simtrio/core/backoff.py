"""Reconnect timing: the backoff formula and the bookkeeping of one reconnecting component.

Both are pure. The shell passes the current time in and gets a delay (or "give up") back, so
every schedule can be tested without a clock and replayed from a seeded ``random.Random``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import attrs

from simtrio.errors import InvalidParams

if TYPE_CHECKING:
    import random

__all__ = ["MIN_JITTERED_DELAY", "BackoffPolicy", "ReconnectState"]

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
    stay up before the next loss starts again from ``initial``.
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
        state.connection_up(now)            # handshake done: the component is UP
        state.attempt_failed(now)           # an attempt failed before UP
        state.connection_lost(now)          # an UP connection was lost
        delay = state.next_delay(now, rng)  # None: give up

    The backoff exponent counts the retries since the component was last stable: it survives
    a connection that came up but did not stay up for ``policy.reset_after``, so a flapping
    peer backs off like a refusing one. ``max_retries`` counts the retries since the component
    was last UP. The outage runs from the loss (or, for a component never UP, from its first
    attempt) until the next UP; it is bounded by ``max_total`` (None: unbounded).
    """

    __slots__ = (
        "_attempt",
        "_gave_up",
        "_outage_start",
        "_retries",
        "_up_since",
        "max_total",
        "policy",
    )

    def __init__(self, policy: BackoffPolicy, max_total: float | None = None) -> None:
        if max_total is not None and not max_total > 0:
            raise InvalidParams(f"max_total must be None or > 0, got {max_total!r}")
        self.policy = policy
        self.max_total = max_total
        self._attempt = 0
        self._retries = 0
        self._up_since: float | None = None
        self._outage_start: float | None = None
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
        """When the current outage began; None while UP or before the first attempt."""
        return self._outage_start

    def attempt_started(self, now: float) -> None:
        """An attempt begins; the first one of a component never UP starts the outage clock."""
        if self._up_since is None and self._outage_start is None:
            self._outage_start = now

    def attempt_failed(self, now: float) -> None:
        """An attempt failed before the component came UP."""
        if self._up_since is not None:
            # A failure reported for a connection that was already UP is a loss.
            self.connection_lost(now)
            return
        if self._outage_start is None:
            self._outage_start = now

    def connection_up(self, now: float) -> None:
        """The handshake completed: the outage ends and the retry budget refills."""
        self._up_since = now
        self._outage_start = None
        self._retries = 0

    def connection_lost(self, now: float) -> None:
        """An UP connection was lost; a connection that stayed up long enough resets backoff."""
        if self._up_since is None:
            self.attempt_failed(now)
            return
        if now - self._up_since >= self.policy.reset_after:
            self._attempt = 0
        self._up_since = None
        self._outage_start = now

    def deadline(self) -> float | None:
        """When the current outage exhausts ``max_total``; None when unbounded or UP."""
        if self.max_total is None or self._outage_start is None:
            return None
        return self._outage_start + self.max_total

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
        if self.max_total is not None:
            left = self._outage_start + self.max_total - now
            if left <= 0:
                self._gave_up = True
                return None
            delay = min(delay, left)
        self._attempt += 1
        self._retries += 1
        return delay
