"""User-facing request builders: validated up front, before any I/O.

``CreateSession`` and ``Continue`` check everything the wire cannot express (a negative slot, an
address that is not base58, both or neither of ``end_slot``/``slot_count``) in their
constructors, so a bad parameter fails where it was written rather than inside a connection.
"""

from __future__ import annotations

__all__: list[str] = []

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeGuard

import attrs

from simtrio.errors import InvalidParams
from simtrio.wire.base58 import sort_addresses
from simtrio.wire.jsonrpc import AccountMods, TransactionInput, account_mods, transaction_base64
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.rules import U16_MAX, U32_MAX, U64_MAX
from simtrio.wire.types import (
    AccountData,
    ContinueParams,
    CreateBacktestSessionRequest,
    DiscoveryFilter,
    ProgramExecuted,
    UnknownDiscoveryFilter,
)

MAX_DISCONNECT_TIMEOUT_SECS = 900
"""The server keeps a detached session at most this long (protocol §3.1)."""


def _unsigned(name: str, value: object, limit: int = U64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"{name} must be an int, not {_type_name(value)}")
    if not 0 <= value <= limit:
        raise InvalidParams(f"{name} must be between 0 and {limit}, got {value}")
    return int(value)


def _optional_unsigned(name: str, value: object, limit: int) -> int | None:
    return None if value is None else _unsigned(name, value, limit)


def _type_name(value: object) -> str:
    return type(value).__name__


def _is_iterable(value: object) -> TypeGuard[Iterable[Any]]:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def _collection(name: str, value: object) -> list[Any]:
    """Items of an iterable argument; a lone ``str`` or a mapping is a mistake, not a list."""
    if not _is_iterable(value):
        raise InvalidParams(f"{name} must be an iterable of items, not {_type_name(value)}")
    return list(value)


def _signers(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(sort_addresses(_collection("signer_filter", value)))


def _agents(value: Iterable[Mapping[str, object]]) -> tuple[dict[str, JsonValue], ...]:
    agents: list[dict[str, JsonValue]] = []
    for agent in _collection("agents", value):
        if not isinstance(agent, Mapping):
            raise InvalidParams(f"each agent must be a mapping, not {_type_name(agent)}")
        agent_map: Mapping[Any, Any] = agent  # pyright: ignore[reportUnknownVariableType]
        if not all(isinstance(k, str) for k in agent_map):
            raise InvalidParams("agent keys must be strings")
        agents.append(dict(agent_map))
    return tuple(agents)


def _discoveries(value: Iterable[DiscoveryFilter]) -> tuple[DiscoveryFilter, ...]:
    filters = _collection("discoveries", value)
    for flt in filters:
        if not isinstance(flt, ProgramExecuted | UnknownDiscoveryFilter):
            raise InvalidParams(f"not a DiscoveryFilter: {_type_name(flt)}")
        if isinstance(flt, ProgramExecuted) and not isinstance(flt.program_id, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidParams("ProgramExecuted.program_id must be a str")
    return tuple(filters)


def _set_fields(instance: object, **values: object) -> None:
    """Fill a frozen instance from a hand-written ``__init__`` (the signature is the public one)."""
    for name, value in values.items():
        object.__setattr__(instance, name, value)


def _count(items: tuple[object, ...], noun: str) -> str:
    return f"<{len(items)} {noun}{'' if len(items) == 1 else 's'}>"


@attrs.frozen(init=False, repr=False)
class CreateSession:
    """Parameters of a new backtest session.

    Give exactly one of ``end_slot`` (inclusive) and ``slot_count`` (``end_slot = start_slot +
    slot_count``). ``signer_filter`` is de-duplicated and kept in wire order; ``agents`` are
    passed to the server verbatim.

    Raises:
        InvalidParams: from the constructor, for any value the server could not accept.
    """

    start_slot: int
    end_slot: int
    signer_filter: tuple[str, ...]
    send_summary: bool
    parallel: bool
    capacity_wait_timeout_secs: int | None
    disconnect_timeout_secs: int | None
    extra_compute_units: int | None
    agents: tuple[dict[str, JsonValue], ...] = attrs.field(hash=False)  # dicts: compared only
    discoveries: tuple[DiscoveryFilter, ...]

    def __init__(
        self,
        start_slot: int,
        *,
        end_slot: int | None = None,
        slot_count: int | None = None,
        signer_filter: Iterable[str] = (),
        send_summary: bool = False,
        parallel: bool = False,
        capacity_wait_timeout_secs: int | None = None,
        disconnect_timeout_secs: int | None = None,
        extra_compute_units: int | None = None,
        agents: Iterable[Mapping[str, object]] = (),
        discoveries: Iterable[DiscoveryFilter] = (),
    ) -> None:
        start = _unsigned("start_slot", start_slot)
        if (end_slot is None) == (slot_count is None):
            raise InvalidParams("give exactly one of end_slot and slot_count")
        if end_slot is not None:
            end = _unsigned("end_slot", end_slot)
            if end < start:
                raise InvalidParams(f"end_slot {end} is before start_slot {start}")
        else:
            end = start + _unsigned("slot_count", slot_count)
            if end > U64_MAX:
                raise InvalidParams("start_slot + slot_count exceeds the slot range")
        disconnect = _optional_unsigned("disconnect_timeout_secs", disconnect_timeout_secs, U16_MAX)
        if disconnect is not None and disconnect > MAX_DISCONNECT_TIMEOUT_SECS:
            raise InvalidParams(
                f"disconnect_timeout_secs must be at most {MAX_DISCONNECT_TIMEOUT_SECS}, "
                f"got {disconnect}"
            )
        for name, flag in (("send_summary", send_summary), ("parallel", parallel)):
            if not isinstance(flag, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise InvalidParams(f"{name} must be a bool, not {_type_name(flag)}")
        _set_fields(
            self,
            start_slot=start,
            end_slot=end,
            signer_filter=_signers(signer_filter),
            send_summary=send_summary,
            parallel=parallel,
            capacity_wait_timeout_secs=_optional_unsigned(
                "capacity_wait_timeout_secs", capacity_wait_timeout_secs, U16_MAX
            ),
            disconnect_timeout_secs=disconnect,
            extra_compute_units=_optional_unsigned(
                "extra_compute_units", extra_compute_units, U32_MAX
            ),
            agents=_agents(agents),
            discoveries=_discoveries(discoveries),
        )

    @property
    def slot_count(self) -> int:
        """``end_slot - start_slot``, the form ``slot_count=`` takes."""
        return self.end_slot - self.start_slot

    def to_request(self) -> CreateBacktestSessionRequest:
        """The ``createBacktestSession`` request; every call returns fresh, unshared lists."""
        return CreateBacktestSessionRequest(
            start_slot=self.start_slot,
            end_slot=self.end_slot,
            signer_filter=list(self.signer_filter),
            send_summary=self.send_summary,
            capacity_wait_timeout_secs=self.capacity_wait_timeout_secs,
            disconnect_timeout_secs=self.disconnect_timeout_secs,
            extra_compute_units=self.extra_compute_units,
            agents=[dict(a) for a in self.agents],
            discoveries=list(self.discoveries),
            parallel=self.parallel,
        )

    def __repr__(self) -> str:
        # Agent objects may be large (or hold configuration a log should not carry): count them.
        parts = [f"{self.start_slot}", f"end_slot={self.end_slot}"]
        if self.signer_filter:
            parts.append(f"signer_filter={_count(self.signer_filter, 'address')}")
        for name in (
            "send_summary",
            "parallel",
            "capacity_wait_timeout_secs",
            "disconnect_timeout_secs",
            "extra_compute_units",
        ):
            value = getattr(self, name)
            if value not in (None, False):
                parts.append(f"{name}={value!r}")
        if self.agents:
            parts.append(f"agents={_count(self.agents, 'agent')}")
        if self.discoveries:
            parts.append(f"discoveries={list(self.discoveries)!r:.200}")
        return f"CreateSession({', '.join(parts)})"


_NO_ACCOUNTS: Mapping[str, AccountData] = MappingProxyType({})


def _transactions(value: Iterable[TransactionInput]) -> tuple[str, ...]:
    items = _collection("transactions", value)
    return tuple(transaction_base64(tx, f"transactions[{i}]") for i, tx in enumerate(items))


@attrs.frozen(init=False, repr=False)
class Continue:
    """One ``continue`` step: run ``advance_count`` slots with these transactions and overrides.

    Each transaction is a solders ``VersionedTransaction`` or ``Transaction``, its serialized
    ``bytes``, or those bytes as base64 ``str``; ``modify_account_states`` maps addresses
    (``Pubkey`` or ``str``) to solders ``Account`` or ``AccountData`` values. Both are
    normalised to the wire form here (base64 text; ``str`` keys, kept in wire order).

    Raises:
        InvalidParams: from the constructor, for a negative count, a transaction or an account
            of the wrong kind (the message names its index or address), or a key that is not a
            base58 address.
    """

    advance_count: int
    transactions: tuple[str, ...]
    modify_account_states: Mapping[str, AccountData] = attrs.field(hash=False)  # compared only

    def __init__(
        self,
        advance_count: int = 1,
        *,
        transactions: Iterable[TransactionInput] = (),
        modify_account_states: AccountMods = _NO_ACCOUNTS,
    ) -> None:
        _set_fields(
            self,
            advance_count=_unsigned("advance_count", advance_count),
            transactions=_transactions(transactions),
            modify_account_states=account_mods(modify_account_states),
        )

    def to_params(self) -> ContinueParams:
        """The ``continue`` request; every call returns fresh, unshared containers."""
        return ContinueParams(
            advance_count=self.advance_count,
            transactions=list(self.transactions),
            modify_account_states=dict(self.modify_account_states),
        )

    def __repr__(self) -> str:
        # Transactions and account data can be megabytes of base64: show counts only.
        parts = [f"{self.advance_count}"]
        if self.transactions:
            parts.append(f"transactions={_count(self.transactions, 'transaction')}")
        if self.modify_account_states:
            accounts = tuple(self.modify_account_states)
            parts.append(f"modify_account_states={_count(accounts, 'account')}")
        return f"Continue({', '.join(parts)})"


def as_continue_params(cont: Continue | ContinueParams) -> ContinueParams:
    """Accept either form wherever continue parameters are taken."""
    if isinstance(cont, Continue):
        return cont.to_params()
    if isinstance(cont, ContinueParams):  # pyright: ignore[reportUnnecessaryIsInstance]
        return cont
    raise InvalidParams(f"expected Continue or ContinueParams, not {_type_name(cont)}")


def as_create_request(
    create: CreateSession | CreateBacktestSessionRequest,
) -> CreateBacktestSessionRequest:
    """Accept either form wherever create parameters are taken."""
    if isinstance(create, CreateSession):
        return create.to_request()
    if isinstance(create, CreateBacktestSessionRequest):  # pyright: ignore[reportUnnecessaryIsInstance]
        return create
    raise InvalidParams(
        f"expected CreateSession or CreateBacktestSessionRequest, not {_type_name(create)}"
    )
