"""Completion-drain bookkeeping (protocol §9.9).

After the control plane reports ``completed``, the session keeps reading its subscriptions
until each has delivered its terminal marker. The drain is bounded by an *idle* timeout, not a
total one: a busy stream may take long, a silent one is declared stalled.
"""

from __future__ import annotations

__all__: list[str] = []

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from simtrio.errors import InvalidParams

STALLED_MESSAGE = (
    "completion drain stalled: subscriptions did not deliver their end-of-stream terminals; "
    "the captured stream is incomplete"
)
"""The ``SubscriptionFailed`` message for a stalled drain."""

K = TypeVar("K", bound=Hashable)


class DrainTracker(Generic[K]):
    """Which subscriptions still owe a terminal, and when the drain counts as stalled.

    The shell creates it when ``completed`` arrives, reports each delivered notification
    (:meth:`notification`) and terminal (:meth:`terminal`), and waits until
    :attr:`is_complete` or until :attr:`deadline` passes (then :meth:`is_stalled` holds).
    A terminal counts as activity too: it is progress of the stream.
    """

    __slots__ = ("_idle_timeout", "_last_activity", "_pending", "_terminated")

    def __init__(self, subscriptions: Iterable[K], idle_timeout: float, now: float) -> None:
        _check_timeout(idle_timeout)
        self._pending: set[K] = set(subscriptions)
        self._terminated: set[K] = set()
        self._idle_timeout = idle_timeout
        self._last_activity = now

    @property
    def idle_timeout(self) -> float:
        return self._idle_timeout

    def set_idle_timeout(self, seconds: float) -> None:
        """Change the idle bound; applies to the gap already running."""
        _check_timeout(seconds)
        self._idle_timeout = seconds

    def add(self, subscription: K) -> None:
        """Wait for one more subscription's terminal (unless it already delivered it)."""
        if subscription not in self._terminated:
            self._pending.add(subscription)

    def notification(self, now: float) -> None:
        """A notification was delivered: the idle clock starts over."""
        self._last_activity = now

    def terminal(self, subscription: K, now: float | None = None) -> None:
        """``subscription`` delivered its terminal (unknown ones are ignored)."""
        self._pending.discard(subscription)
        self._terminated.add(subscription)
        if now is not None:
            self._last_activity = now

    @property
    def pending(self) -> frozenset[K]:
        """Subscriptions whose terminal is still missing."""
        return frozenset(self._pending)

    @property
    def deadline(self) -> float:
        """When the drain counts as stalled unless more activity arrives."""
        return self._last_activity + self._idle_timeout

    @property
    def is_complete(self) -> bool:
        return not self._pending

    def is_stalled(self, now: float) -> bool:
        """True when terminals are missing and the idle bound has passed."""
        return bool(self._pending) and now >= self.deadline


def _check_timeout(seconds: float) -> None:
    if not seconds > 0:
        raise InvalidParams(f"completion drain timeout must be > 0, got {seconds!r}")
