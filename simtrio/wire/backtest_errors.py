"""Errors the server reports (protocol §5): data carried by ``error`` events, not exceptions.

``BacktestError`` is the base; each variant is a subclass named exactly as the wire tag, which is
also its ``KIND``. Spelling and tolerance live in :mod:`simtrio.wire.error_codec`.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import Any, ClassVar, Final

import attrs

from simtrio.wire.jsontext import JsonValue
from simtrio.wire.rules import kind_key

BOOKKEEPING_FIELDS: Final = frozenset({"raw", "tag"})
"""Attributes of ``BacktestError`` that are bookkeeping, not wire fields."""

_TERMINAL_KINDS = frozenset(
    kind_key(k)
    for k in ("SessionNotFound", "SessionOwnerMismatch", "SessionOwnershipBusy", "Internal")
)


@attrs.frozen
class BacktestError:
    """Base of every server-reported error. ``kind`` names the variant; ``raw`` keeps the JSON.

    A variant's ``KIND`` is its class name, set when the class is defined.
    """

    KIND: ClassVar[str] = "Unknown"
    raw: JsonValue = attrs.field(default=None, eq=False, kw_only=True, repr=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "KIND" not in cls.__dict__:
            cls.KIND = cls.__name__

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def is_terminal(self) -> bool:
        """Terminal errors end a session for good; it depends on the kind name alone."""
        return kind_key(self.kind) in _TERMINAL_KINDS

    def __str__(self) -> str:
        fields = [
            f"{a.name}={getattr(self, a.name)!r}"
            for a in attrs.fields(type(self))
            if a.name not in BOOKKEEPING_FIELDS
        ]
        return f"{self.kind}({', '.join(fields)})" if fields else self.kind


@attrs.frozen
class InvalidTransactionEncoding(BacktestError):
    """Transaction ``index`` of a ``continue`` is not base64 or cannot be deserialised."""

    index: int
    error: str


@attrs.frozen
class InvalidTransactionFormat(BacktestError):
    """Transaction ``index`` of a ``continue`` decodes but is not a well-formed transaction."""

    index: int
    error: str


@attrs.frozen
class InvalidAccountEncoding(BacktestError):
    """The data of ``address`` in ``modifyAccountStates`` cannot be decoded as ``encoding``."""

    address: str
    encoding: str
    error: str


@attrs.frozen
class InvalidAccountOwner(BacktestError):
    """The owner of ``address`` in ``modifyAccountStates`` is not a valid address."""

    address: str
    error: str


@attrs.frozen
class InvalidAccountPubkey(BacktestError):
    """A ``modifyAccountStates`` key, ``address``, is not a 32-byte base58 address."""

    address: str
    error: str


@attrs.frozen
class NoMoreBlocks(BacktestError):
    """The range has no further block to run."""


@attrs.frozen
class AdvanceSlotFailed(BacktestError):
    """The server could not advance the session past ``slot`` during a step."""

    slot: int
    error: str


@attrs.frozen
class InvalidRequest(BacktestError):
    """A request the server cannot read or accept now (a bad range, a ``continue`` mid-step)."""

    error: str


@attrs.frozen
class Internal(BacktestError):
    """The server failed on its own side while running the session; terminal."""

    error: str


@attrs.frozen
class InvalidBlockhashFormat(BacktestError):
    """A blockhash the server reads for ``slot`` is malformed, so the slot cannot run."""

    slot: int
    error: str


@attrs.frozen
class InitializingSysvarsFailed(BacktestError):
    """The server could not set up the sysvars of ``slot`` before running it."""

    slot: int
    error: str


@attrs.frozen
class ClerkError(BacktestError):
    """A backend component of the simulator (its clerk) failed; ``error`` says how."""

    error: str


@attrs.frozen
class SimulationError(BacktestError):
    """Executing a step's transactions failed inside the simulator."""

    error: str


@attrs.frozen
class SessionNotFound(BacktestError):
    """An attach or sub-session request names ``session_id``, unknown to the server; terminal."""

    session_id: str


@attrs.frozen
class SessionOwnerMismatch(BacktestError):
    """The session belongs to another API key."""


@attrs.frozen
class SessionOwnershipBusy(BacktestError):
    """Later servers: the session cannot be taken over now (``reason`` says why); terminal."""

    reason: str


@attrs.frozen
class BundleNotFound(BacktestError):
    """Later servers: no snapshot bundle covers the created range ``start_slot``-``end_slot``."""

    start_slot: int
    end_slot: int


@attrs.frozen
class FinalizeSlotFailed(BacktestError):
    """Later servers: the server could not finalise ``slot`` after running it."""

    slot: int
    error: str


@attrs.frozen
class NoProducedBlocksInRange(BacktestError):
    """Later servers: the created range ``start_slot``-``end_slot`` has no produced block."""

    start_slot: int
    end_slot: int


@attrs.frozen
class SessionNameTaken(BacktestError):
    """Later servers: a create asks for a session name, ``session_name``, already in use."""

    session_name: str


@attrs.frozen
class UnknownBacktestError(BacktestError):
    """An error kind simtrio does not know, or a known tag whose fields could not be read.

    ``kind`` is the tag as received (``"Unknown"`` when there is none), so a recognised terminal
    tag with unreadable fields is still terminal. ``raw`` (the JSON as received) comes first,
    so ``UnknownBacktestError(raw)`` and ``case UnknownBacktestError(raw)`` read naturally.
    """

    KIND: ClassVar[str] = BacktestError.KIND
    raw: JsonValue = attrs.field(default=None, eq=False, repr=False)
    tag: str = attrs.field(default="Unknown", kw_only=True)

    @property
    def kind(self) -> str:
        return self.tag


KNOWN_ERRORS: Final[tuple[type[BacktestError], ...]] = (
    InvalidTransactionEncoding,
    InvalidTransactionFormat,
    InvalidAccountEncoding,
    InvalidAccountOwner,
    InvalidAccountPubkey,
    NoMoreBlocks,
    AdvanceSlotFailed,
    InvalidRequest,
    Internal,
    InvalidBlockhashFormat,
    InitializingSysvarsFailed,
    ClerkError,
    SimulationError,
    SessionNotFound,
    SessionOwnerMismatch,
    SessionOwnershipBusy,
    BundleNotFound,
    FinalizeSlotFailed,
    NoProducedBlocksInRange,
    SessionNameTaken,
)
"""Every variant this version of simtrio knows, in the order of protocol §5."""
