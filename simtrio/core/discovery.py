"""Discovery stepping (protocol §6.7, chain C5): the decisions of ``advance_to_discovery``.

:class:`DiscoveryStepper` is fed what a session reads (discovery batches, readiness events,
``completed``) and says what to do next: wait, send ``continueTo`` for the next queued batch,
or run on with a plain ``continue`` when no batch is coming. Batches that arrive at any time
(before readiness included) are queued, never dropped. The plain and managed sessions keep one
stepper each and carry its decisions out.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
from collections import deque
from typing import Final, TypeAlias

import attrs

from simtrio.wire.types import (
    AgentStatsReport,
    DiscoveryBatchEvent,
    PausedEvent,
    SessionSummary,
)

DISCOVERY_SETTLE: Final = 2.0
"""Seconds to wait, once ready, for a ``discoveryBatch`` before deciding none is coming.

The protocol has no "no further discovery" message: a server scans ahead after each readiness
event and announces the next matching batch when it finds one, so silence is the only sign that
none is left. A scan over a long stretch of slots can take a noticeable time, so the default
leaves room for it; a wait that ends too early would run past a discovery.
"""

_LAST_BATCH: Final = 2**32
"""Above every batch index: a position past the whole slot."""

RUN_ON_COUNT: Final = 2**32 - 1
"""``advanceCount`` of the ``continue`` that runs a range without further discoveries to its
end when the session's slot count is not known (the server stops at ``completed``)."""


@attrs.frozen
class DiscoveryPaused:
    """``advance_to_discovery`` stopped right before ``discovery``'s batch: RPC reads show the
    state through the batch before it."""

    discovery: DiscoveryBatchEvent
    paused: PausedEvent


@attrs.frozen
class DiscoveryCompleted:
    """The range completed with no further discovery."""

    summary: SessionSummary | None = None
    agent_stats: list[AgentStatsReport] | None = None


DiscoveryStep: TypeAlias = DiscoveryPaused | DiscoveryCompleted
"""What ``advance_to_discovery`` returns."""


class Next(enum.Enum):
    """What the shell does next when :meth:`DiscoveryStepper.next` has no batch to target."""

    READ = "read"
    """Read the next response/event (no bound beyond the call's own)."""
    SETTLE = "settle"
    """Ready with no batch queued: read, but for at most ``DISCOVERY_SETTLE`` seconds."""
    RUN_ON = "run_on"
    """Ready, and no batch came: send a plain ``continue`` to run on."""


class DiscoveryStepper:
    """Queue of announced batches and the readiness of one (sub-)session.

    The shell loops::

        action = stepper.next(settled)
        # DiscoveryBatchEvent: send continueTo(batch.slot, batch.batch_index), then
        #                      stepper.sent(); Next.RUN_ON: send continue, stepper.sent()
        # Next.READ / SETTLE: read one item and feed it (batch / ready / completed)

    until :meth:`ready` or :meth:`completed` returns a :data:`DiscoveryStep`.
    """

    __slots__ = ("_batches", "_floor", "_target", "is_ready")

    def __init__(self) -> None:
        self._batches: deque[DiscoveryBatchEvent] = deque()
        self._target: DiscoveryBatchEvent | None = None
        self._floor: tuple[int, int] = (-1, -1)
        """Batches at or below this (slot, batch) position have run or were paused at."""
        self.is_ready = False
        """True while the session waits for a continue (as far as this stepper has seen)."""

    @property
    def queued(self) -> int:
        """Announced batches not targeted yet."""
        return len(self._batches)

    def batch(self, event: DiscoveryBatchEvent) -> None:
        """A ``discoveryBatch`` was read."""
        self._batches.append(event)

    def slot(self, slot: int) -> None:
        """A ``slotNotification``: the session reached ``slot``, so batches of earlier slots
        are history, not targets."""
        self._raise_floor((slot, -1))

    def ready(self, paused: PausedEvent | None) -> DiscoveryPaused | None:
        """A readiness event was read (``paused`` carries a ``Paused``'s payload).

        Returns the step's result when it answers the ``continueTo`` in flight.
        """
        self.is_ready = True
        if paused is not None:
            index = paused.batch_index
            self._raise_floor((paused.slot, _LAST_BATCH if index is None else index))
        target, self._target = self._target, None
        if target is not None and paused is not None:
            return DiscoveryPaused(target, paused)
        return None

    def completed(
        self, summary: SessionSummary | None, agent_stats: list[AgentStatsReport] | None
    ) -> DiscoveryCompleted:
        """``completed`` was read: the range is done."""
        self.is_ready = False
        self._target = None
        self._batches.clear()
        return DiscoveryCompleted(summary, agent_stats)

    def refused(self) -> None:
        """The server answered the continue in flight with an error: it still waits."""
        self.is_ready = True
        self._target = None

    def _raise_floor(self, position: tuple[int, int]) -> None:
        self._floor = max(self._floor, position)

    def next(self, settled: bool = False) -> DiscoveryBatchEvent | Next:
        """The batch to send ``continueTo`` for, or what to do instead.

        ``settled`` is true once a :attr:`Next.SETTLE` read timed out with nothing new.
        Batches the session has already run past (or stopped at) are dropped here.
        """
        if not self.is_ready:
            return Next.READ
        batches = self._batches
        while batches and _position(batches[0]) <= self._floor:
            batches.popleft()
        if batches:
            return self._batches[0]
        return Next.RUN_ON if settled else Next.SETTLE

    def sent(self) -> None:
        """The ``continueTo`` for the batch chosen by :meth:`next` was written."""
        self.is_ready = False
        if self._batches:
            self._target = self._batches.popleft()

    def sent_run_on(self) -> None:
        """The plain ``continue`` of :attr:`Next.RUN_ON` was written."""
        self.is_ready = False
        self._target = None


def _position(event: DiscoveryBatchEvent) -> tuple[int, int]:
    return (event.slot, event.batch_index if event.batch_index is not None else 0)
