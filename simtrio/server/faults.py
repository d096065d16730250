"""Fault injection plans for the reference server (protocol §12.9).

A plan is plain data. Every trigger counts messages, never wall-clock time, so a run under
trio's ``MockClock`` is deterministic; only the length of a ``delay`` or a ``stall_for`` is a
duration, and those are slept with ``trio.sleep`` so a mock clock governs them too.

Counting rules (the spec leaves these open):

* a connection's messages are its outbound WebSocket data messages, numbered from 1 in the
  order they are sent: handshake replies, acks, responses, notifications, terminals alike;
  messages a fault adds (``malformed_at``, ``oversize_at``) are not counted;
* ``corrupt_compressed_at`` counts Binary messages only (the N-th Binary message);
* connections are numbered per plane from 1 in the order their upgrade requests reach the
  plane (after routing and the API-key check, before ``reject_upgrade`` is applied), so a
  rejected upgrade uses up an index too.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import attrs


class Plane(enum.StrEnum):
    """Which WebSocket plane a connection belongs to."""

    CONTROL = "control"
    DATA = "data"


def _opt_index(_inst: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} counts from 1, got {value!r}")


def _opt_non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    """A message count or a duration: None (off) or at least 0."""
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _opt_status(_inst: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and not 300 <= value <= 599:
        raise ValueError(f"{attribute.name} must be an HTTP status in 300..599, got {value!r}")


@attrs.frozen
class Faults:
    """The faults of one connection; every setting is off by default.

    Attributes:
        drop_after: after sending this many messages, close the TCP connection abruptly (no
            Close frame, no terminal); 0 drops right after the upgrade.
        stall_after: after sending this many messages, stop reading and writing (Pongs
            included) while keeping TCP open; 0 stalls right after the upgrade.
        stall_for: how long a stall lasts, in seconds; None stalls until the connection ends.
        delay: seconds to wait before each outbound message.
        malformed_at: send a Text message that is not JSON right before message N.
        oversize_at: send a message over ``oversize_bytes`` right before message N: Text, or on
            a compressed data connection a Binary message of the same stream decoding past it.
        oversize_bytes: size of that message; None means the server's ``max_message_size``
            plus one (a client using the same limit must reject it).
        corrupt_compressed_at: replace the N-th Binary message with bytes that do not decode.
        reject_upgrade: refuse the upgrade with this HTTP status.
    """

    drop_after: int | None = attrs.field(default=None, validator=_opt_non_negative)
    stall_after: int | None = attrs.field(default=None, validator=_opt_non_negative)
    stall_for: float | None = attrs.field(default=None, validator=_opt_non_negative)
    delay: float | None = attrs.field(default=None, validator=_opt_non_negative)
    malformed_at: int | None = attrs.field(default=None, validator=_opt_index)
    oversize_at: int | None = attrs.field(default=None, validator=_opt_index)
    oversize_bytes: int | None = attrs.field(default=None, validator=_opt_index)
    corrupt_compressed_at: int | None = attrs.field(default=None, validator=_opt_index)
    reject_upgrade: int | None = attrs.field(default=None, validator=_opt_status)

    @property
    def active(self) -> bool:
        """True when any setting is on."""
        return self != _NO_FAULTS


_NO_FAULTS: Final = Faults()


def _frozen_map(value: Mapping[int, Faults]) -> Mapping[int, Faults]:
    return MappingProxyType(dict(value))


@attrs.frozen
class FaultPlan:
    """Faults per plane, optionally per connection index.

    ``control`` / ``data`` apply to every connection of that plane that has no entry in
    ``control_connections`` / ``data_connections``; an entry (keyed by the 1-based connection
    index) replaces the plane default for that one connection.
    """

    control: Faults = _NO_FAULTS
    data: Faults = _NO_FAULTS
    control_connections: Mapping[int, Faults] = attrs.field(
        factory=lambda: MappingProxyType({}), converter=_frozen_map
    )
    data_connections: Mapping[int, Faults] = attrs.field(
        factory=lambda: MappingProxyType({}), converter=_frozen_map
    )

    def for_connection(self, plane: Plane, index: int) -> Faults:
        """The faults of the ``index``-th connection (from 1) of ``plane``."""
        if plane is Plane.CONTROL:
            return self.control_connections.get(index, self.control)
        return self.data_connections.get(index, self.data)


class FaultKind(enum.StrEnum):
    """The settings :func:`random_fault_plan` may draw."""

    DROP = "drop"
    STALL = "stall"
    DELAY = "delay"
    MALFORMED = "malformed"
    OVERSIZE = "oversize"
    CORRUPT = "corrupt"
    REJECT = "reject"


_DEFAULT_KINDS: Final = (FaultKind.DROP, FaultKind.STALL, FaultKind.MALFORMED, FaultKind.CORRUPT)


def random_fault_plan(
    seed: int,
    *,
    connections: int = 4,
    max_messages: int = 50,
    kinds: Sequence[FaultKind] = _DEFAULT_KINDS,
    planes: Sequence[Plane] = (Plane.CONTROL, Plane.DATA),
    probability: float = 0.5,
    stall_for: float = 30.0,
    delay: float = 0.01,
    oversize_bytes: int | None = None,
    reject_status: int = 503,
) -> FaultPlan:
    """A reproducible plan for chaos tests, drawn from ``seed`` (normally the chain number).

    Each of the first ``connections`` connections of each plane in ``planes`` gets, with
    ``probability``, one fault of a kind drawn from ``kinds`` triggered at a message count in
    ``1..max_messages``; later connections run clean, so a reconnecting client always gets
    through in the end.
    """
    if connections < 0 or max_messages < 1:
        raise ValueError("connections must be >= 0 and max_messages >= 1")
    rng = random.Random(f"simtrio-faults|{seed}")
    per_plane: dict[Plane, dict[int, Faults]] = {Plane.CONTROL: {}, Plane.DATA: {}}
    for plane in (Plane.CONTROL, Plane.DATA):
        for index in range(1, connections + 1):
            # Draw for every slot even when it is unused, so adding a plane or kind
            # elsewhere does not reshuffle the rest of the plan.
            hit = rng.random() < probability
            kind = kinds[rng.randrange(len(kinds))] if kinds else None
            at = rng.randint(1, max_messages)
            if not hit or kind is None or plane not in planes:
                continue
            per_plane[plane][index] = _fault_of(
                kind,
                at,
                stall_for=stall_for,
                delay=delay,
                oversize_bytes=oversize_bytes,
                reject_status=reject_status,
            )
    return FaultPlan(
        control_connections=per_plane[Plane.CONTROL], data_connections=per_plane[Plane.DATA]
    )


def _fault_of(
    kind: FaultKind,
    at: int,
    *,
    stall_for: float,
    delay: float,
    oversize_bytes: int | None,
    reject_status: int,
) -> Faults:
    match kind:
        # Triggered by the message count alone, then with a parameter, then not by a count.
        case FaultKind.DROP:
            return Faults(drop_after=at)
        case FaultKind.MALFORMED:
            return Faults(malformed_at=at)
        case FaultKind.CORRUPT:
            return Faults(corrupt_compressed_at=at)
        case FaultKind.OVERSIZE:
            return Faults(oversize_at=at, oversize_bytes=oversize_bytes)
        case FaultKind.STALL:
            return Faults(stall_after=at, stall_for=stall_for)
        case FaultKind.DELAY:
            return Faults(delay=delay)
        case FaultKind.REJECT:
            return Faults(reject_upgrade=reject_status)
