"""Configuration of the reference server."""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Final

import attrs

from simtrio.server.chain import DEFAULT_BLOCK_TIME_ORIGIN, DEFAULT_PROGRAM_IDS, ChainConfig, utc_of
from simtrio.server.faults import FaultPlan
from simtrio.wire.compression import MAX_MESSAGE_SIZE
from simtrio.wire.types import AvailableRange

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_DISCONNECT_TIMEOUT_SECS: Final = 900
"""The default cap on ``disconnectTimeoutSecs`` (protocol §3.1)."""

API_KEY_ENV: Final = "SIMULATOR_API_KEY"
"""Environment variable ``simtrio serve`` reads the API key from."""

_KIB: Final = 1024
_MIB: Final = 1024 * 1024

_ge0 = attrs.validators.ge(0)
_ge1 = attrs.validators.ge(1)


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class ServerConfig:
    """Everything the reference server can be told; ``attrs.evolve`` it to change a field.

    Attributes:
        api_key: required ``X-API-Key`` on control upgrades; None accepts any (or no) key.
        seed: the chain number: every synthetic value and every randomised fault is drawn
            from it.
        program_ids: programs the synthetic transactions involve.
        max_transactions_per_slot: each slot has 1..this many transactions (0: none).
        batches_per_slot: contiguous batches a slot is split into (``continueTo`` targets).
        accounts_per_program: accounts each program owns (subjects of account diffs).
        failure_rate: share of historical transactions that fail.
        mismatch_rate: share of transactions whose replay deviates (summary counters).
        block_time_origin: Unix time of slot 0.
        bundle_size: slots per snapshot bundle; parallel creates split at its multiples.
        window_start: first slot of the chain window served by ``/available-ranges``.
        window_end: last slot of the chain window.
        strict_ranges: apply the bundle rules of protocol §1.5 to creates.
        max_parallel_sessions: most sub-sessions one parallel create may produce.
        max_session_slots: longest range (``endSlot - startSlot + 1``) one create may ask for,
            parallel or not.
        max_sessions: most live sessions (single and sub-sessions, attached or not); a create
            that would pass it is refused.
        max_detached_sessions: most sessions (a parallel group counting once) kept without a
            control connection while they wait for an attach; past it, the one detached
            longest is removed.
        max_disconnect_timeout: cap on a create's ``disconnectTimeoutSecs``.
        retained_responses: numbered responses kept per session for attach replay.
        retained_slots: slots of data-plane events kept per session for ``replayFromSlot``.
        retained_bytes: bound on what a session's retained data-plane events count for
            (their encoded size; a fixed upper estimate for synthetic ones): past it the oldest
            slots leave the window early, and a live subscriber still owed them holds the
            session back instead. The newest slot is always kept; a slot whose user events
            already count for this much takes no more user transactions.
        control_backlog: unsent responses a step may run ahead of an attached, live control
            connection before it waits for the connection (back-pressure).
        control_backlog_bytes: the same bound in bytes of encoded responses.
        message_queue_size: inbound WebSocket messages buffered per connection, beyond the
            one being read and the one being handled.
        max_message_size: the protocol's message limit: the size an ``oversize_at`` fault
            exceeds when it has no ``oversize_bytes``.
        max_request_size: largest inbound message on a control connection (a bigger one
            is refused with Close 1009).
        max_data_request_size: largest inbound message on a data connection.
        max_connections: most TCP connections served at once (lowered to what the process's
            file-descriptor limit leaves room for); past it, a connection is answered 503 and
            closed.
        handshake_timeout: bound on reading a request head (and body) and on the WebSocket
            upgrade; a slower peer is disconnected.
        max_chain_sessions: most sessions holding a LiteSVM at once (each costs several MiB);
            past it, chain use is refused until one of them is closed or removed.
        max_user_transactions_per_slot: user transactions (continues, ``sendTransaction``,
            airdrops) one slot of a session takes; past it, they are refused until the session
            advances.
        http_idle_timeout: how long a kept-alive HTTP connection may wait for its next request
            to begin; then it is closed. Longer than httpx's 5 s, so that a pooling client
            drops an idle connection before the server does and never sends into a closing one.
        http_max_requests: plain HTTP requests one connection may carry; the last answer
            says ``connection: close``.
        deterministic_ids: derive session ids from the chain number and a counter (same
            seed, same ids; for tests and reproducible runs). Off: ids are random.
        slot_delay: seconds each executed slot takes (0: as fast as the clients read).
        close_timeout: bound on a server-initiated WebSocket close handshake.
        faults: injected faults (protocol §12.9).
        draining: start in draining mode (``/ready`` answers 503, creates are refused).
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    seed: int = 0
    program_ids: tuple[str, ...] = DEFAULT_PROGRAM_IDS
    max_transactions_per_slot: int = attrs.field(default=4, validator=_ge0)
    batches_per_slot: int = attrs.field(default=4, validator=_ge1)
    accounts_per_program: int = attrs.field(default=8, validator=_ge0)
    failure_rate: float = 0.1
    mismatch_rate: float = 0.0
    block_time_origin: int = DEFAULT_BLOCK_TIME_ORIGIN
    bundle_size: int = attrs.field(default=100, validator=_ge1)
    window_start: int = attrs.field(default=0, validator=_ge0)
    window_end: int = attrs.field(default=99_999, validator=_ge0)
    strict_ranges: bool = False
    max_parallel_sessions: int = attrs.field(default=1_024, validator=_ge1)
    max_session_slots: int = attrs.field(default=1_000_000, validator=_ge1)
    max_sessions: int = attrs.field(default=4_096, validator=_ge1)
    max_detached_sessions: int = attrs.field(default=64, validator=_ge1)
    max_disconnect_timeout: int = attrs.field(default=MAX_DISCONNECT_TIMEOUT_SECS, validator=_ge0)
    retained_responses: int = attrs.field(default=10_000, validator=_ge1)
    retained_slots: int = attrs.field(default=100, validator=_ge1)
    retained_bytes: int = attrs.field(default=32 * _MIB, validator=_ge1)
    control_backlog: int = attrs.field(default=1_024, validator=_ge1)
    control_backlog_bytes: int = attrs.field(default=16 * _MIB, validator=_ge1)
    message_queue_size: int = attrs.field(default=2, validator=_ge1)
    max_message_size: int = attrs.field(default=MAX_MESSAGE_SIZE, validator=_ge1)
    max_request_size: int = attrs.field(default=16 * _MIB, validator=_ge1)
    max_data_request_size: int = attrs.field(default=64 * _KIB, validator=_ge1)
    max_connections: int = attrs.field(default=4_096, validator=_ge1)
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    max_chain_sessions: int = attrs.field(default=512, validator=_ge1)
    max_user_transactions_per_slot: int = attrs.field(default=4_096, validator=_ge1)
    http_idle_timeout: float = attrs.field(default=15.0, validator=_positive)
    http_max_requests: int = attrs.field(default=1_000, validator=_ge1)
    deterministic_ids: bool = False
    slot_delay: float = attrs.field(default=0.0, validator=_non_negative)
    close_timeout: float = attrs.field(default=1.0, validator=_non_negative)
    faults: FaultPlan = attrs.field(factory=FaultPlan)
    draining: bool = False

    def __attrs_post_init__(self) -> None:
        if self.window_end < self.window_start:
            raise ValueError("window_end must not be below window_start")
        self.chain  # noqa: B018 - validates the chain fields now, not on first use

    @property
    def chain(self) -> ChainConfig:
        """The synthetic-chain part of the configuration (built anew on each access)."""
        return ChainConfig(
            seed=self.seed,
            program_ids=self.program_ids,
            max_transactions_per_slot=self.max_transactions_per_slot,
            batches_per_slot=self.batches_per_slot,
            accounts_per_program=self.accounts_per_program,
            failure_rate=self.failure_rate,
            mismatch_rate=self.mismatch_rate,
            block_time_origin=self.block_time_origin,
        )

    def bundle_start(self, slot: int) -> int:
        """Start of the bundle that contains ``slot``."""
        return slot - slot % self.bundle_size

    def available_ranges(self) -> list[AvailableRange]:
        """Bundles of ``bundle_size`` slots covering the chain window (protocol §12.8)."""
        return list(self.iter_available_ranges())

    def iter_available_ranges(self) -> Iterator[AvailableRange]:
        """:meth:`available_ranges` one bundle at a time (the server yields between them)."""
        chain = self.chain
        start = self.bundle_start(self.window_start)
        while start <= self.window_end:
            end = min(start + self.bundle_size - 1, self.window_end)
            snapshot = start - 1 if start > 0 else None
            yield AvailableRange(
                bundle_start_slot=start,
                snapshot_slot=snapshot,
                snapshot_slot_utc=utc_of(chain, snapshot) if snapshot is not None else None,
                bundle_start_slot_utc=utc_of(chain, start),
                max_bundle_end_slot=end,
                max_bundle_end_slot_utc=utc_of(chain, end),
            )
            start += self.bundle_size
