"""Where a managed control plane stands, shared by the single-session and parallel cores.

Both cores move through the same :class:`Phase` values and answer the control loop's questions
(reconnect? still creating?) the same way; :class:`PhasedCore` holds that part once, and
:class:`ControlCore` is what the trio control loop may ask of either core.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
from typing import TYPE_CHECKING, Final, Protocol

from simtrio.errors import excerpt
from simtrio.wire import types as wire

if TYPE_CHECKING:
    import logging


class Phase(enum.Enum):
    """Where a managed control plane stands; COMPLETED and FAILED are final."""

    CREATING = "creating"
    """The create request is outstanding (it is re-sent on every new connection)."""
    ATTACHING = "attaching"
    """The session exists; a (new) connection must attach before it is UP."""
    RUNNING = "running"
    """The handshake reply arrived on the current connection."""
    COMPLETED = "completed"
    """``completed`` was delivered; no reconnects any more."""
    FAILED = "failed"
    """Gave up, or a fatal error."""


_RECONNECTING: Final = (Phase.CREATING, Phase.ATTACHING, Phase.RUNNING)


class PhasedCore:
    """Base of the control-plane cores: the phase, and what it means for a lost connection."""

    __slots__ = ("_phase",)

    def __init__(self) -> None:
        self._phase = Phase.CREATING

    @property
    def phase(self) -> Phase:
        """The current phase (it starts at CREATING)."""
        return self._phase

    @property
    def wants_reconnect(self) -> bool:
        """Whether a lost connection should be re-established."""
        return self._phase in _RECONNECTING

    @property
    def creating(self) -> bool:
        """True while the create is pending (failures then surface as ``CreateFailed``)."""
        return self._phase is Phase.CREATING

    def _opening_creates(self) -> bool:
        """A new connection is open: True when it re-sends the create, False when it attaches.

        RUNNING here is a loss the shell did not report: the new connection reattaches.
        """
        phase = self._phase
        if phase is Phase.CREATING:
            return True
        if phase is Phase.RUNNING:
            self._phase = phase = Phase.ATTACHING
        if phase is Phase.ATTACHING:
            return False
        raise RuntimeError(f"no new connection in phase {phase.name}")

    def _lost_while_creating(self) -> bool:
        """The connection ended: True when the create is re-sent on the next one."""
        phase = self._phase
        if phase is Phase.RUNNING:
            self._phase = Phase.ATTACHING
        return phase is Phase.CREATING


class ControlCore(Protocol):
    """What the reconnecting control loop asks of a core, single or parallel."""

    @property
    def phase(self) -> Phase:
        """Where the control plane stands (it decides each handshake's time limit)."""
        ...

    @property
    def wants_reconnect(self) -> bool:
        """Whether a lost connection should be re-established."""
        ...

    @property
    def creating(self) -> bool:
        """True while the create is pending (a give-up then raises ``CreateFailed``)."""
        ...

    @property
    def step_outstanding(self) -> bool:
        """Whether a written continue waits for its answer (the idle-step detector's question)."""
        ...

    def connection_opened(self) -> wire.BacktestRequest:
        """A new connection is open: the first request to write on it."""
        ...

    def connection_lost(self) -> None:
        """The current connection ended (any cause)."""
        ...

    def give_up(self) -> None:
        """The shell stopped reconnecting (budget spent or a fatal connect error)."""
        ...


def log_dropped(logger: logging.Logger, response: wire.BacktestResponse, when: str) -> None:
    """Log, on the caller's logger, a response that has no meaning ``when`` it arrived."""
    if isinstance(response, wire.UnknownResponse):
        logger.info("dropping unknown response %r %s", excerpt(response.method), when)
    else:
        logger.info("dropping %s %s", type(response).__name__, when)
