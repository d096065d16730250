"""Settings and small value types shared by managed sessions and subscriptions.

Kept free of trio so the sans-IO core and its tests can build a configuration without an event
loop; the trio shells read these values, the core never sees a clock.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
import random
import ssl
from typing import Any, Final

import attrs

from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import InvalidParams

DEFAULT_RECONNECT_MAX_TOTAL: Final = 900.0
"""Outage budget when the session has no ``disconnect_timeout_secs`` (protocol §8.1)."""

DEFAULT_FIRST_CONNECT_MAX_TOTAL: Final = 10.0
"""How long a server that refuses the very first connection is retried."""

DEFAULT_IDLE_STEP_TIMEOUT: Final = 300.0
"""Longest control-plane silence while a continue is unanswered before the connection is lost."""

_MIB: Final = 1024 * 1024


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidParams(f"{attribute.name} must be a number > 0, got {value!r}")


def _optional_positive(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(inst, attribute, value)


def _positive_int(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParams(f"{attribute.name} must be an int >= 1, got {value!r}")


def _non_negative_int(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParams(f"{attribute.name} must be an int >= 0, got {value!r}")


def _backoff(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, BackoffPolicy):
        raise InvalidParams(f"{attribute.name} must be a BackoffPolicy, got {value!r}")


def _ssl_context(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise InvalidParams(f"{attribute.name} must be an ssl.SSLContext or None")


def _seed(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidParams(f"{attribute.name} must be an int or None, got {value!r}")


@attrs.frozen(kw_only=True)
class ManagedConfig:
    """Timeouts, limits and reconnect policy of managed sessions and subscriptions.

    Durations are seconds. ``reconnect_max_total`` None means "the session's
    ``disconnect_timeout_secs``, or 900 s when that is unset or 0" (see :meth:`max_total_for`);
    an outage ends only once a connection has stayed healthy for ``backoff.reset_after``.
    ``first_connect_max_total`` bounds the retries of a component that has not yet opened a
    single connection (a refused or unreachable server); None applies the outage budget instead.
    ``idle_step_timeout`` is how long the control connection may stay silent (Pongs aside)
    while a written continue is unanswered before it counts as lost; None disables the check.
    ``rng_seed`` makes backoff jitter reproducible; ``ssl_context`` overrides the default TLS
    setup for ``wss://`` URLs. A data-plane buffer holds at most ``event_buffer``
    notifications and ``event_buffer_bytes`` of them (message sizes after decompression; an
    empty buffer takes one notification of any size).

    The data-plane barrier: a continue waits while a subscription's provably received slot
    lags the control plane by more than ``data_lag_window`` slots; a data connection that
    answers no ping within ``data_pong_timeout`` seconds is replaced; a re-subscription that
    would need events more than ``server_retained_slots`` slots old (the server's replay
    retention) fails with a gap. Keep ``data_lag_window`` plus the longest step well below
    ``server_retained_slots``. A standalone subscription learns its session's slot from
    ``getSlot`` every ``standalone_probe_interval`` seconds and probes it, so that a quiet one
    can prove how far it got.
    """

    connect_timeout: float = attrs.field(default=30.0, validator=_positive)
    handshake_timeout: float = attrs.field(default=60.0, validator=_positive)
    create_response_timeout: float = attrs.field(default=900.0, validator=_positive)
    keepalive_interval: float = attrs.field(default=15.0, validator=_positive)
    keepalive_miss_deadline: float = attrs.field(default=45.0, validator=_positive)
    completion_drain_timeout: float = attrs.field(default=60.0, validator=_positive)
    graceful_close_timeout: float = attrs.field(default=5.0, validator=_positive)
    max_message_size: int = attrs.field(default=64 * _MIB, validator=_positive_int)
    reconnect_max_total: float | None = attrs.field(default=None, validator=_optional_positive)
    first_connect_max_total: float | None = attrs.field(
        default=DEFAULT_FIRST_CONNECT_MAX_TOTAL, validator=_optional_positive
    )
    idle_step_timeout: float | None = attrs.field(
        default=DEFAULT_IDLE_STEP_TIMEOUT, validator=_optional_positive
    )
    event_buffer: int = attrs.field(default=1024, validator=_positive_int)
    event_buffer_bytes: int = attrs.field(default=16 * _MIB, validator=_positive_int)
    backoff: BackoffPolicy = attrs.field(factory=BackoffPolicy, validator=_backoff)
    continue_channel_capacity: int = attrs.field(default=256, validator=_positive_int)
    coordinator_fast_attempts: int = attrs.field(default=3, validator=_non_negative_int)
    data_lag_window: int = attrs.field(default=50, validator=_positive_int)
    data_pong_timeout: float = attrs.field(default=10.0, validator=_positive)
    server_retained_slots: int = attrs.field(default=100, validator=_positive_int)
    standalone_probe_interval: float = attrs.field(default=1.0, validator=_positive)
    ssl_context: ssl.SSLContext | None = attrs.field(
        default=None, eq=False, repr=False, validator=_ssl_context
    )
    rng_seed: int | None = attrs.field(default=None, validator=_seed)

    def __attrs_post_init__(self) -> None:
        if self.data_lag_window >= self.server_retained_slots:
            raise InvalidParams(
                f"data_lag_window ({self.data_lag_window}) must be below"
                f" server_retained_slots ({self.server_retained_slots})"
            )

    def max_total_for(self, disconnect_timeout_secs: int | None) -> float:
        """The outage budget for a session created with this ``disconnect_timeout_secs``."""
        if self.reconnect_max_total is not None:
            return float(self.reconnect_max_total)
        if disconnect_timeout_secs is not None and disconnect_timeout_secs > 0:
            return float(disconnect_timeout_secs)
        return DEFAULT_RECONNECT_MAX_TOTAL

    def make_rng(self) -> random.Random:
        """A jitter source: seeded when ``rng_seed`` is set, else from system entropy."""
        return random.Random(self.rng_seed)


class ConnectionStatus(enum.Enum):
    """State of a managed connection (protocol §8.5)."""

    DOWN = "down"
    """Initial, and after an orderly end."""
    UP = "up"
    """Handshake complete."""
    RECONNECTING = "reconnecting"
    """A connection was lost or an attempt failed; waiting or retrying."""
    FAILED = "failed"
    """Gave up; final."""


@attrs.frozen
class SessionInfo:
    """Identity of a managed (sub-)session; ``rpc_endpoint`` is absolute."""

    session_id: str
    rpc_endpoint: str
    task_id: str | None = None
