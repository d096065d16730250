"""Control-plane JSON codec (protocol §2 to §5), shared by the clients and the reference server.

Encoding is canonical: one exact text per message (§2.5). Decoding is tolerant in precisely the
documented ways (both field spellings, kind matching, alternate tagging forms) and strict about
JSON types: nothing is ever coerced, so ``"4001"`` is not a slot and ``true`` is not an integer.
The only exception that leaves a decoder is :class:`~simtrio.errors.ProtocolError`; a frame that
is well-formed JSON but does not fit its method becomes an ``UnknownResponse`` instead.

One cattrs ``Converter`` holds every hook. Its built-in primitive hooks coerce (``int("4001")``),
so each one is replaced by a strict hook here, and hooks for attrs classes are generated once per
class from :data:`SPELLINGS`, which is the single place where wire spellings live.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import NoneType, UnionType
from typing import Any, Final, TypeAlias, TypeGuard, Union, cast, get_args, get_origin

import attrs
import cattrs
import orjson

from simtrio.errors import InvalidParams, ProtocolError
from simtrio.wire.base58 import address_value, sort_addresses
from simtrio.wire.construct import plain_constructor
from simtrio.wire.types import (
    AccountData,
    AdvanceSlotFailed,
    AgentStatsReport,
    AttachBacktestSession,
    AttachParallelControlSessionV2,
    AvailableRange,
    BacktestError,
    BacktestRequest,
    BacktestResponse,
    BacktestStatus,
    BundleNotFound,
    ClerkError,
    CloseBacktestSession,
    CloseSessionRequestV1,
    Completed,
    ContinueParams,
    ContinueSessionRequestV1,
    ContinueToParams,
    ContinueToSessionRequestV1,
    CreateBacktestSessionRequest,
    DiscoveryBatch,
    DiscoveryBatchEvent,
    DiscoveryFilter,
    EncodedBinary,
    Error,
    FinalizeSlotFailed,
    InitializingSysvarsFailed,
    Internal,
    InvalidAccountEncoding,
    InvalidAccountOwner,
    InvalidAccountPubkey,
    InvalidBlockhashFormat,
    InvalidRequest,
    InvalidTransactionEncoding,
    InvalidTransactionFormat,
    JsonValue,
    NoMoreBlocks,
    NoProducedBlocksInRange,
    ParallelSessionAttachedV2,
    Paused,
    PausedEvent,
    ProgramExecuted,
    ReadyForContinue,
    ResumeAttachedSession,
    SessionAttached,
    SessionCreated,
    SessionEvent,
    SessionEventV1,
    SessionEventV2,
    SessionNameTaken,
    SessionNotFound,
    SessionOwnerMismatch,
    SessionOwnershipBusy,
    SessionsCreated,
    SessionsCreatedV2,
    SessionSummary,
    SimulationError,
    SlotNotification,
    Status,
    Success,
    UnknownBacktestError,
    UnknownDiscoveryFilter,
    UnknownRequest,
    UnknownResponse,
    UnknownSessionEvent,
    kind_key,
)

__all__ = [
    "METHOD_KEY",
    "PARAMS_KEY",
    "SEQ_ID_KEY",
    "SPELLINGS",
    "decode_available_ranges",
    "decode_backtest_error",
    "decode_frame",
    "decode_request",
    "decode_response",
    "encode",
    "encode_available_ranges",
    "encode_backtest_error",
    "encode_plain_continue",
    "encode_response",
]

logger = logging.getLogger(__name__)

# ============================================================================================
# Spellings: every JSON key and tag simtrio emits (protocol §0 "Keep spellings in one place")
# ============================================================================================

SEQ_ID_KEY: Final = "seqId"
METHOD_KEY: Final = "method"
PARAMS_KEY: Final = "params"

Spelling: TypeAlias = tuple[str | None, Mapping[str, str] | None]
"""``(tag, fields)``. ``tag`` is the ``method`` (or error / filter tag); ``fields`` maps each
Python attribute to its wire key in emission order, ``{}`` marks a unit variant and ``None`` a
newtype variant whose payload is its single attribute."""

SPELLINGS: Final[Mapping[type, Spelling]] = {
    # -- requests (§3): standalone structs camelCase, struct-variant fields snake_case (§2.2)
    CreateBacktestSessionRequest: (
        "createBacktestSession",
        {
            "start_slot": "startSlot",
            "end_slot": "endSlot",
            "signer_filter": "signerFilter",
            "send_summary": "sendSummary",
            "capacity_wait_timeout_secs": "capacityWaitTimeoutSecs",
            "disconnect_timeout_secs": "disconnectTimeoutSecs",
            "extra_compute_units": "extraComputeUnits",
            "agents": "agents",
            "discoveries": "discoveries",
            "parallel": "parallel",
        },
    ),
    ContinueParams: (
        "continue",
        {
            "advance_count": "advanceCount",
            "transactions": "transactions",
            "modify_account_states": "modifyAccountStates",
        },
    ),
    ContinueToParams: ("continueTo", {"slot": "slot", "batch_index": "batchIndex"}),
    ContinueSessionRequestV1: (
        "continueSessionV1",
        {"session_id": "sessionId", "request": "request"},
    ),
    ContinueToSessionRequestV1: (
        "continueToSessionV1",
        {"session_id": "sessionId", "request": "request"},
    ),
    CloseBacktestSession: ("closeBacktestSession", {}),
    CloseSessionRequestV1: ("closeSessionV1", {"session_id": "sessionId"}),
    AttachBacktestSession: (
        "attachBacktestSession",
        {"session_id": "session_id", "last_sequence": "last_sequence"},
    ),
    ResumeAttachedSession: ("resumeAttachedSession", {}),
    AttachParallelControlSessionV2: (
        "attachParallelControlSessionV2",
        {"control_session_id": "control_session_id", "last_sequences": "last_sequences"},
    ),
    AccountData: (
        None,
        {
            "data": "data",
            "executable": "executable",
            "lamports": "lamports",
            "owner": "owner",
            "space": "space",
        },
    ),
    EncodedBinary: (None, {"data": "data", "encoding": "encoding"}),
    # -- responses (§4): the reference server writes snake_case everywhere
    SessionCreated: (
        "sessionCreated",
        {"session_id": "session_id", "rpc_endpoint": "rpc_endpoint", "task_id": "task_id"},
    ),
    SessionAttached: (
        "sessionAttached",
        {"session_id": "session_id", "rpc_endpoint": "rpc_endpoint", "task_id": "task_id"},
    ),
    SessionsCreated: ("sessionsCreated", {"session_ids": "session_ids"}),
    SessionsCreatedV2: (
        "sessionsCreatedV2",
        {
            "control_session_id": "control_session_id",
            "session_ids": "session_ids",
            "task_ids": "task_ids",
            "start_slots": "start_slots",
            "end_slots": "end_slots",
        },
    ),
    ParallelSessionAttachedV2: (
        "parallelSessionAttachedV2",
        {
            "control_session_id": "control_session_id",
            "session_ids": "session_ids",
            "task_ids": "task_ids",
        },
    ),
    ReadyForContinue: ("readyForContinue", {}),
    SlotNotification: ("slotNotification", None),
    Paused: ("paused", None),
    DiscoveryBatch: ("discoveryBatch", None),
    Error: ("error", None),
    Success: ("success", {}),
    Completed: ("completed", {"summary": "summary", "agent_stats": "agent_stats"}),
    Status: ("status", {"status": "status"}),
    SessionEventV1: ("sessionEventV1", {"session_id": "session_id", "event": "event"}),
    SessionEventV2: (
        "sessionEventV2",
        {"session_id": "session_id", "seq_id": "seq_id", "event": "event"},
    ),
    PausedEvent: (None, {"slot": "slot", "batch_index": "batch_index"}),
    DiscoveryBatchEvent: (
        None,
        {
            "slot": "slot",
            "batch_index": "batch_index",
            "matched": "matched",
            "transactions": "transactions",
        },
    ),
    SessionSummary: (
        None,
        {
            "correct_simulation": "correct_simulation",
            "incorrect_simulation": "incorrect_simulation",
            "execution_errors": "execution_errors",
            "balance_diff": "balance_diff",
            "log_diff": "log_diff",
        },
    ),
    AgentStatsReport: (
        None,
        {
            "name": "name",
            "slots_processed": "slots_processed",
            "opportunities_found": "opportunities_found",
            "opportunities_skipped": "opportunities_skipped",
            "no_routes": "no_routes",
            "txs_produced": "txs_produced",
            "expected_gain_by_mint": "expected_gain_by_mint",
            "txs_submitted": "txs_submitted",
            "txs_failed": "txs_failed",
            "txs_simulation_rejected": "txs_simulation_rejected",
            "txs_simulation_failed": "txs_simulation_failed",
        },
    ),
    # -- discovery filters (§4.5): externally tagged
    ProgramExecuted: ("ProgramExecuted", None),
    # -- errors (§5): externally tagged, PascalCase tags, snake_case fields
    InvalidTransactionEncoding: (
        "InvalidTransactionEncoding",
        {"index": "index", "error": "error"},
    ),
    InvalidTransactionFormat: ("InvalidTransactionFormat", {"index": "index", "error": "error"}),
    InvalidAccountEncoding: (
        "InvalidAccountEncoding",
        {"address": "address", "encoding": "encoding", "error": "error"},
    ),
    InvalidAccountOwner: ("InvalidAccountOwner", {"address": "address", "error": "error"}),
    InvalidAccountPubkey: ("InvalidAccountPubkey", {"address": "address", "error": "error"}),
    NoMoreBlocks: ("NoMoreBlocks", {}),
    AdvanceSlotFailed: ("AdvanceSlotFailed", {"slot": "slot", "error": "error"}),
    InvalidRequest: ("InvalidRequest", {"error": "error"}),
    Internal: ("Internal", {"error": "error"}),
    InvalidBlockhashFormat: ("InvalidBlockhashFormat", {"slot": "slot", "error": "error"}),
    InitializingSysvarsFailed: (
        "InitializingSysvarsFailed",
        {"slot": "slot", "error": "error"},
    ),
    ClerkError: ("ClerkError", {"error": "error"}),
    SimulationError: ("SimulationError", {"error": "error"}),
    SessionNotFound: ("SessionNotFound", {"session_id": "session_id"}),
    SessionOwnerMismatch: ("SessionOwnerMismatch", {}),
    SessionOwnershipBusy: ("SessionOwnershipBusy", {"reason": "reason"}),
    BundleNotFound: ("BundleNotFound", {"start_slot": "start_slot", "end_slot": "end_slot"}),
    FinalizeSlotFailed: ("FinalizeSlotFailed", {"slot": "slot", "error": "error"}),
    NoProducedBlocksInRange: (
        "NoProducedBlocksInRange",
        {"start_slot": "start_slot", "end_slot": "end_slot"},
    ),
    SessionNameTaken: ("SessionNameTaken", {"session_name": "session_name"}),
    # -- management HTTP (§1.5): camelCase, in the documented order
    AvailableRange: (
        None,
        {
            "snapshot_slot": "snapshotSlot",
            "snapshot_slot_utc": "snapshotSlotUtc",
            "bundle_start_slot": "bundleStartSlot",
            "bundle_start_slot_utc": "bundleStartSlotUtc",
            "max_bundle_end_slot": "maxBundleEndSlot",
            "max_bundle_end_slot_utc": "maxBundleEndSlotUtc",
        },
    ),
}

# Decoders look a field up under these alternates too (snake_case first, then camelCase; §2.2).
_SEQ_ID_ALT: Final = "seq_id"
# Tolerated error shapes (§5.2): where a tag may sit, and where its fields may be nested.
_ERROR_TAG_KEYS: Final = ("kind", "type", "code", "method")
_ERROR_PAYLOAD_KEYS: Final = ("params", "content", "data")

# ============================================================================================
# Value ranges and field-specific rules
# ============================================================================================

_U16_MAX: Final = 2**16 - 1
_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_UINT_NAMES: Final = {_U16_MAX: "u16", _U32_MAX: "u32", _U64_MAX: "u64"}

_UNSIGNED_BOUNDS: Final[Mapping[tuple[type, str], int]] = {
    (CreateBacktestSessionRequest, "capacity_wait_timeout_secs"): _U16_MAX,
    (CreateBacktestSessionRequest, "disconnect_timeout_secs"): _U16_MAX,
    (CreateBacktestSessionRequest, "extra_compute_units"): _U32_MAX,
    (ContinueToParams, "batch_index"): _U32_MAX,
    (PausedEvent, "batch_index"): _U32_MAX,
    (DiscoveryBatchEvent, "batch_index"): _U32_MAX,
}
"""Fields narrower than u64; every other unsigned field is a u64."""

_DECODE_DEFAULTS: Final[Mapping[tuple[type, str], object]] = {
    (ContinueParams, "advance_count"): 1,  # §3.2
    (DiscoveryBatchEvent, "batch_index"): None,
}
"""Decoder defaults for missing keys where the class itself has none."""

_SKIPPED_FIELDS: Final = frozenset({"raw", "tag"})
"""Attributes of ``BacktestError`` that are bookkeeping, not wire fields."""


class _Mismatch(Exception):
    """A JSON value that does not fit where it was found (internal; never escapes)."""


_MISSING: Final[Any] = object()
_REQUIRED: Final[Any] = object()

_Hook: TypeAlias = Callable[[Any, Any], Any]
"""A structure hook: ``(json_value, type) -> value``."""
_UHook: TypeAlias = Callable[[Any], Any]
"""An unstructure hook: ``value -> json_value``."""

_conv: Final = cattrs.Converter(detailed_validation=False)
"""The one converter; every hook on it is strict, so nothing is coerced."""


# ============================================================================================
# Structure hooks (JSON value -> Python), strict: they raise _Mismatch and nothing else
# ============================================================================================


def _unsigned_hook(limit: int) -> _Hook:
    expected = f"expected a {_UINT_NAMES[limit]}"

    def hook(value: Any, _: Any) -> int:
        if type(value) is int and 0 <= value <= limit:
            return value
        raise _Mismatch(f"{expected}, got {type(value).__name__}")

    return hook


_s_u64: Final = _unsigned_hook(_U64_MAX)


def _s_i64(value: Any, _: Any) -> int:
    if type(value) is int and _I64_MIN <= value <= _I64_MAX:
        return value
    raise _Mismatch(f"expected a signed 64-bit integer, got {type(value).__name__}")


def _s_str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    raise _Mismatch(f"expected a string, got {type(value).__name__}")


def _s_bool(value: Any, _: Any) -> bool:
    if type(value) is bool:
        return value
    raise _Mismatch(f"expected a boolean, got {type(value).__name__}")


def _s_raw(value: Any, _: Any) -> Any:
    return value


_STATUS_BY_TEXT: Final[Mapping[str, BacktestStatus]] = {m.value: m for m in BacktestStatus}


def _s_status(value: Any, _: Any) -> BacktestStatus:
    if type(value) is str:
        return _STATUS_BY_TEXT.get(value) or BacktestStatus(value)
    raise _Mismatch(f"expected a status string, got {type(value).__name__}")


def _s_i64_map(value: Any, _: Any) -> dict[str, int]:
    obj: dict[str, Any] = value
    if type(obj) is not dict:
        raise _Mismatch("expected an object")
    return {k: _s_i64(v, None) for k, v in obj.items()}


_FIELD_DECODERS: Final[Mapping[tuple[type, str], _Hook]] = {
    (AgentStatsReport, "expected_gain_by_mint"): _s_i64_map,
}
"""Fields whose type alone does not say how to read them (the only signed integers)."""


def _as_object(value: Any) -> dict[str, Any] | None:
    """``value`` if it is a JSON object (as orjson builds them), else None."""
    obj: dict[str, Any] = value
    return obj if type(obj) is dict else None


def _optional_inner(tp: Any) -> Any:
    """``X`` for ``X | None`` (exactly one other member), else ``None``."""
    if get_origin(tp) not in (Union, UnionType):
        return None
    args = [a for a in get_args(tp) if a is not NoneType]
    if len(args) != 1 or len(args) == len(get_args(tp)):
        return None
    return args[0]


def _is_optional(tp: Any) -> bool:
    return _optional_inner(tp) is not None


def _is_list(tp: Any) -> bool:
    return get_origin(tp) is list


def _is_str_map(tp: Any) -> bool:
    return get_origin(tp) in (dict, Mapping) and get_args(tp)[:1] == (str,)


def _s_optional_factory(tp: Any) -> _Hook:
    inner_tp = _optional_inner(tp)
    inner = _conv.get_structure_hook(inner_tp)

    def hook(value: Any, _: Any) -> Any:
        return None if value is None else inner(value, inner_tp)

    return hook


def _s_list_factory(tp: Any) -> _Hook:
    (item_tp,) = get_args(tp)
    item = _conv.get_structure_hook(item_tp)

    def hook(value: Any, _: Any) -> list[Any]:
        items: list[Any] = value
        if type(items) is not list:
            raise _Mismatch(f"expected an array, got {type(value).__name__}")
        return [item(v, item_tp) for v in items]

    return hook


def _s_map_factory(tp: Any) -> _Hook:
    _, item_tp = get_args(tp)
    item = _conv.get_structure_hook(item_tp)

    def hook(value: Any, _: Any) -> dict[str, Any]:
        obj: dict[str, Any] = value
        if type(obj) is not dict:
            raise _Mismatch(f"expected an object, got {type(value).__name__}")
        return {k: item(v, item_tp) for k, v in obj.items()}

    return hook


def _key(cls: type, attr: str) -> str:
    """The emitted key of one attribute."""
    fields = SPELLINGS[cls][1]
    if not fields:
        raise KeyError(f"{cls.__name__} has no struct fields")
    return fields[attr]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _decode_keys(cls: type, attr: str) -> tuple[str, tuple[str, ...]]:
    """The emitted key (for messages) and the keys a decoder tries: snake_case, then camelCase."""
    fields = SPELLINGS.get(cls, (None, None))[1]
    emitted = fields[attr] if fields and attr in fields else attr
    return emitted, tuple(dict.fromkeys((attr, _camel(attr), emitted)))


def _resolved_fields(cls: type) -> tuple[attrs.Attribute[Any], ...]:
    attrs.resolve_types(cls)
    return tuple(a for a in attrs.fields(cls) if a.name not in _SKIPPED_FIELDS)


_FieldReader: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]


def _fields_reader(cls: type) -> _FieldReader:
    """Build, once, the function that reads an object's fields into constructor kwargs."""
    specs: list[tuple[str, str, tuple[str, ...], _Hook, Any, Any]] = []
    for field in _resolved_fields(cls):
        bound = _UNSIGNED_BOUNDS.get((cls, field.name))
        if bound is not None:
            hook = _unsigned_hook(bound)
            if _is_optional(field.type):
                hook = _optional_wrap(hook)
        elif (cls, field.name) in _FIELD_DECODERS:
            hook = _FIELD_DECODERS[cls, field.name]
        else:
            hook = _conv.get_structure_hook(field.type)
        if (cls, field.name) in _DECODE_DEFAULTS:
            default = _DECODE_DEFAULTS[cls, field.name]
        elif field.default is attrs.NOTHING:
            default = _REQUIRED
        else:
            default = _MISSING  # let the class apply its own default
        label, keys = _decode_keys(cls, field.name)
        specs.append((field.name, label, keys, hook, field.type, default))
    frozen_specs = tuple(specs)

    def read(obj: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, label, keys, hook, tp, default in frozen_specs:
            value = _MISSING
            for key in keys:
                value = obj.get(key, _MISSING)
                if value is not _MISSING:
                    break
            if value is _MISSING:
                if default is _REQUIRED:
                    raise _Mismatch(f"missing {label}")
                if default is not _MISSING:
                    kwargs[name] = default
                continue
            try:
                kwargs[name] = hook(value, tp)
            except _Mismatch as exc:
                raise _Mismatch(f"{label}: {exc}") from None
        return kwargs

    return read


def _optional_wrap(inner: _Hook) -> _Hook:
    def hook(value: Any, tp: Any) -> Any:
        return None if value is None else inner(value, tp)

    return hook


def _s_attrs_factory(cls: type) -> _Hook:
    read = _fields_reader(cls)

    def hook(value: Any, _: Any) -> Any:
        obj: dict[str, Any] = value
        if type(obj) is not dict:
            raise _Mismatch(f"expected an object, got {type(value).__name__}")
        return cls(**read(obj))

    return hook


def _s_filter(value: Any, _: Any) -> DiscoveryFilter:
    """§4.5: ``{"ProgramExecuted": id}`` with kind matching; anything else is kept raw."""
    obj: dict[str, Any] = value
    if type(obj) is dict and len(obj) == 1:
        ((tag, program_id),) = obj.items()
        if kind_key(tag) == _PROGRAM_EXECUTED_KEY and type(program_id) is str:
            return ProgramExecuted(program_id)
    return UnknownDiscoveryFilter(value)


def _s_event(value: Any, _: Any) -> SessionEvent:
    return _decode_event(value)


def _s_error(value: Any, _: Any) -> BacktestError:
    return decode_backtest_error(value)


_PROGRAM_EXECUTED_KEY: Final = kind_key("ProgramExecuted")


def _fail_structure(tp: Any) -> _Hook:
    raise TypeError(f"simtrio codec has no structure hook for {tp!r}")


# Later registrations take precedence in cattrs; specific types go last.
_conv.register_structure_hook_factory(lambda _tp: True, _fail_structure)
_conv.register_structure_hook_factory(attrs.has, _s_attrs_factory)
_conv.register_structure_hook_factory(_is_optional, _s_optional_factory)
_conv.register_structure_hook_factory(_is_list, _s_list_factory)
_conv.register_structure_hook_factory(_is_str_map, _s_map_factory)
# cattrs' built-in class hooks (which coerce) win over predicates, so classes are overridden
# as classes.
_conv.register_structure_hook(int, _s_u64)
_conv.register_structure_hook(str, _s_str)
_conv.register_structure_hook(bool, _s_bool)
_conv.register_structure_hook(BacktestStatus, _s_status)
_conv.register_structure_hook_func(lambda tp: tp is Any, _s_raw)
_conv.register_structure_hook_func(lambda tp: tp == DiscoveryFilter, _s_filter)
_conv.register_structure_hook_func(lambda tp: tp == SessionEvent, _s_event)
_conv.register_structure_hook_func(lambda tp: tp is BacktestError, _s_error)


# ============================================================================================
# Unstructure hooks (Python -> JSON value), validating: they raise InvalidParams
# ============================================================================================


def _type_error(expected: str, value: object) -> InvalidParams:
    return InvalidParams(f"expected {expected}, got {type(value).__name__}")


def _unsigned_out(limit: int) -> _Hook:
    expected = f"expected a {_UINT_NAMES[limit]}"

    def hook(value: Any, _: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit:
            return int(value)
        raise InvalidParams(f"{expected}, got {value!r:.40}")

    return hook


_u_u64: Final = _unsigned_out(_U64_MAX)


def _u_i64(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and _I64_MIN <= value <= _I64_MAX:
        return int(value)
    raise InvalidParams(f"expected a signed 64-bit integer, got {value!r:.40}")


def _u_str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise _type_error("a string", value)


def _u_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _type_error("a boolean", value)


def _u_status(value: Any, _: Any) -> str:
    if isinstance(value, BacktestStatus):
        return value.value
    return _u_str(value, None)


def _u_optional_factory(tp: Any) -> _UHook:
    inner_tp = _optional_inner(tp)
    inner = _conv.get_unstructure_hook(inner_tp)

    def hook(value: Any, _: Any = None) -> Any:
        return None if value is None else inner(value)

    return hook


def _u_list_factory(tp: Any) -> _UHook:
    (item_tp,) = get_args(tp)
    item = _conv.get_unstructure_hook(item_tp)

    def hook(value: Any, _: Any = None) -> list[Any]:
        return [item(v) for v in _sequence(value, "a list")]

    return hook


def _u_map_factory(tp: Any) -> _UHook:
    _, item_tp = get_args(tp)
    item = _conv.get_unstructure_hook(item_tp)

    def hook(value: Any, _: Any = None) -> dict[str, Any]:
        mapping = _mapping(value, "a mapping")
        return {_u_str(k, None): item(v) for k, v in mapping.items()}

    return hook


def _u_signers(value: Any, _: Any = None) -> list[str]:
    return sort_addresses(value)


def _is_mapping(value: object) -> TypeGuard[Mapping[Any, Any]]:
    return isinstance(value, Mapping)


def _is_sequence(value: object) -> TypeGuard[Sequence[Any]]:
    return isinstance(value, list | tuple)


def _mapping(value: object, expected: str) -> Mapping[Any, Any]:
    if not _is_mapping(value):
        raise _type_error(expected, value)
    return value


def _sequence(value: object, expected: str) -> Sequence[Any]:
    if not _is_sequence(value):
        raise _type_error(expected, value)
    return value


def _u_account_states(value: Any, _: Any = None) -> dict[str, Any]:
    states = _mapping(value, "a mapping of address to AccountData")
    # Distinct 32-byte addresses have distinct values, so the sort never compares accounts.
    items = sorted((address_value(k), k, v) for k, v in states.items())
    account = _conv.get_unstructure_hook(AccountData)
    return {k: account(v) for _, k, v in items}


def _address_order(key: str) -> tuple[int, int, str]:
    """Order by address value; keys that are not addresses (responses only) go last, by text."""
    try:
        return (0, address_value(key), "")
    except InvalidParams:
        return (1, 0, key)


def _u_gain_by_mint(value: Any, _: Any = None) -> dict[str, int]:
    gains = _mapping(value, "a mapping of mint to integer")
    keys = sorted((_u_str(k, None) for k in gains), key=_address_order)
    return {k: _u_i64(gains[k], None) for k in keys}


def _u_cursors(value: Any, _: Any = None) -> dict[str, int]:
    cursors = _mapping(value, "a mapping of session id to sequence")
    keys = sorted(_u_str(k, None) for k in cursors)
    return {k: _u_u64(cursors[k], None) for k in keys}


def _u_agents(value: Any, _: Any = None) -> list[dict[str, Any]]:
    agents = _sequence(value, "a list of agent objects")
    out = [dict(_mapping(agent, "an agent object")) for agent in agents]
    for agent in out:
        _check_finite(agent)
    return out


def _check_finite(value: Any) -> None:
    """JSON has no NaN or infinity; orjson would silently write them as ``null``."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidParams(f"agent objects cannot carry {value!r}: JSON has no such number")
    elif isinstance(value, dict):
        for item in cast("Iterable[Any]", value.values()):
            _check_finite(item)
    elif isinstance(value, list | tuple):
        for item in cast("Iterable[Any]", value):
            _check_finite(item)


def _bounded_out(limit: int, *, optional: bool) -> _UHook:
    unsigned = _unsigned_out(limit)

    def hook(value: Any) -> Any:
        return None if (optional and value is None) else unsigned(value, None)

    return hook


_FIELD_ENCODERS: Final[Mapping[tuple[type, str], _UHook]] = {
    (CreateBacktestSessionRequest, "signer_filter"): _u_signers,
    (CreateBacktestSessionRequest, "agents"): _u_agents,
    (ContinueParams, "modify_account_states"): _u_account_states,
    (AgentStatsReport, "expected_gain_by_mint"): _u_gain_by_mint,
    (AttachParallelControlSessionV2, "last_sequences"): _u_cursors,
}


_FieldWriter: TypeAlias = Callable[[Any], dict[str, Any]]


def _fields_writer(cls: type) -> _FieldWriter:
    """Build, once, the function that writes an instance's fields in table order."""
    fields = SPELLINGS[cls][1]
    if fields is None:
        raise TypeError(f"{cls.__name__} is a newtype variant, not a struct")
    types_by_name = {f.name: f.type for f in _resolved_fields(cls)}
    specs: list[tuple[str, str, _UHook]] = []
    for name, key in fields.items():
        hook: _UHook
        custom = _FIELD_ENCODERS.get((cls, name))
        bound = _UNSIGNED_BOUNDS.get((cls, name))
        if custom is not None:
            hook = custom
        elif bound is not None:
            hook = _bounded_out(bound, optional=_is_optional(types_by_name[name]))
        else:
            hook = _conv.get_unstructure_hook(types_by_name[name])
        specs.append((name, key, hook))
    frozen_specs = tuple(specs)

    def write(obj: Any) -> dict[str, Any]:
        if not isinstance(obj, cls):
            raise _type_error(cls.__name__, obj)
        out: dict[str, Any] = {}
        for name, key, hook in frozen_specs:
            try:
                out[key] = hook(getattr(obj, name))
            except InvalidParams as exc:
                raise InvalidParams(f"{key}: {exc}") from None
        return out

    return write


def _u_attrs_factory(cls: type) -> _UHook:
    return _fields_writer(cls)


def _u_filter(value: Any) -> JsonValue:
    if isinstance(value, ProgramExecuted):
        tag = SPELLINGS[ProgramExecuted][0]
        return {tag: _u_str(value.program_id, None)}
    if isinstance(value, UnknownDiscoveryFilter):
        return value.raw
    raise _type_error("a DiscoveryFilter", value)


def _u_event(value: Any) -> JsonValue:
    return _encode_event(value)


def _fail_unstructure(tp: Any) -> _UHook:
    raise TypeError(f"simtrio codec has no unstructure hook for {tp!r}")


_conv.register_unstructure_hook_factory(lambda _tp: True, _fail_unstructure)
_conv.register_unstructure_hook_factory(attrs.has, _u_attrs_factory)
_conv.register_unstructure_hook_factory(_is_optional, _u_optional_factory)
_conv.register_unstructure_hook_factory(_is_list, _u_list_factory)
_conv.register_unstructure_hook_factory(_is_str_map, _u_map_factory)
_conv.register_unstructure_hook(int, lambda v: _u_u64(v, None))
_conv.register_unstructure_hook(str, lambda v: _u_str(v, None))
_conv.register_unstructure_hook(bool, lambda v: _u_bool(v, None))
_conv.register_unstructure_hook(BacktestStatus, lambda v: _u_status(v, None))
_conv.register_unstructure_hook_func(lambda tp: tp is Any, lambda v: v)
_conv.register_unstructure_hook_func(lambda tp: tp == DiscoveryFilter, _u_filter)
_conv.register_unstructure_hook_func(lambda tp: tp == SessionEvent, _u_event)
_conv.register_unstructure_hook_func(
    lambda tp: tp is BacktestError, lambda v: encode_backtest_error(v)
)


# ============================================================================================
# JSON text
# ============================================================================================


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise InvalidParams(f"cannot be written as JSON: {exc}") from None
    # orjson refuses integers beyond 64 bits; they only come from unknown frames kept
    # verbatim, so this slower, lossless path is taken only for them.
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"cannot be written as JSON: {exc}") from None


def _holds_float(value: object) -> bool:
    """Whether a decoded JSON value holds a float anywhere (cheap for the usual small params)."""
    items: Iterable[object]
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        items = cast("dict[str, object]", value).values()
    elif isinstance(value, list):
        items = cast("list[object]", value)
    else:
        return False
    return any(_holds_float(item) for item in items)


def _exact_params(text: str | bytes, params: Any) -> Any:
    """``params`` of an unknown frame, re-read without loss when orjson may have rounded.

    orjson reads an integer beyond 64 bits as a float. A frame simtrio keeps verbatim (an
    unknown method, or params that do not fit theirs) is read again with the standard library,
    which keeps such integers exact; only frames holding a float pay for it.
    """
    if not _holds_float(params):
        return params
    try:
        obj = json.loads(text)
    except ValueError:  # pragma: no cover - orjson accepted it
        return params
    return cast("dict[str, Any]", obj).get(PARAMS_KEY)


def _loads_object(text: str | bytes) -> dict[str, Any]:
    try:
        obj: dict[str, Any] = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("not valid JSON", data=_excerpt_source(text)) from None
    if type(obj) is not dict:
        raise ProtocolError("not a JSON object", data=_excerpt_source(text))
    return obj


def _excerpt_source(text: object) -> str | bytes | None:
    if isinstance(text, str | bytes):
        return text
    if isinstance(text, bytearray | memoryview):
        return bytes(cast("bytes", text)[:200])
    return None


# ============================================================================================
# Errors (§5)
# ============================================================================================

_ERROR_CLASSES: Final[tuple[type[BacktestError], ...]] = tuple(
    cls for cls in SPELLINGS if issubclass(cls, BacktestError)
)


@attrs.frozen
class _ErrorKind:
    cls: type[BacktestError]
    tag: str
    read: _FieldReader
    single: tuple[str, _Hook, Any] | None
    """The one field of a single-field kind, for the bare-value form."""
    unit: bool
    write: _FieldWriter | None


def _error_kind(cls: type[BacktestError]) -> _ErrorKind:
    tag = SPELLINGS[cls][0]
    if tag is None:
        raise TypeError(f"{cls.__name__} has no tag")
    fields = _resolved_fields(cls)
    single = None
    if len(fields) == 1:
        single = (fields[0].name, _conv.get_structure_hook(fields[0].type), fields[0].type)
    return _ErrorKind(
        cls=cls,
        tag=tag,
        read=_fields_reader(cls),
        single=single,
        unit=not fields,
        write=_fields_writer(cls) if fields else None,
    )


_ERROR_KINDS: Final[Mapping[str, _ErrorKind]] = {
    kind_key(k.tag): k for k in map(_error_kind, _ERROR_CLASSES)
}
_ERROR_WRITERS: Final[Mapping[type, _ErrorKind]] = {k.cls: k for k in _ERROR_KINDS.values()}


def _error_from(tag: str, payload: Any, raw: JsonValue) -> BacktestError:
    kind = _ERROR_KINDS.get(kind_key(tag))
    if kind is None:
        return UnknownBacktestError(tag=tag, raw=raw)
    if kind.unit:
        return kind.cls(raw=raw)
    try:
        fields = _as_object(payload)
        if fields is not None:
            return kind.cls(**kind.read(fields), raw=raw)
        if kind.single is not None:
            name, hook, tp = kind.single
            return kind.cls(**{name: hook(payload, tp)}, raw=raw)
    except _Mismatch:
        pass
    return UnknownBacktestError(tag=kind.tag, raw=raw)


def decode_backtest_error(value: JsonValue) -> BacktestError:
    """Read a ``BacktestError`` from any tolerated JSON form (§5.2); never raises.

    A recognised tag whose fields cannot be read becomes ``UnknownBacktestError`` whose ``kind``
    is the canonical PascalCase name, so terminal classification still works.
    """
    if type(value) is str:
        return _error_from(value, None, value)
    obj = _as_object(value)
    if obj is None:
        return UnknownBacktestError(raw=value)
    for tag_key in _ERROR_TAG_KEYS:
        tag = obj.get(tag_key)
        if type(tag) is str:
            payload: Any = obj
            for payload_key in _ERROR_PAYLOAD_KEYS:
                if payload_key in obj:
                    nested: Any = obj[payload_key]
                    if _as_object(nested) is not None or len(obj) == 2:
                        payload = nested
                    break
            return _error_from(tag, payload, obj)
    if len(obj) == 1:
        ((tag, payload),) = obj.items()
        return _error_from(tag, payload, obj)
    return UnknownBacktestError(raw=obj)


def encode_backtest_error(err: BacktestError) -> JsonValue:
    """The canonical externally tagged form (§5.2); unknown errors re-encode their raw JSON."""
    kind = _ERROR_WRITERS.get(type(err))
    if kind is not None:
        if kind.write is None:
            return kind.tag
        return {kind.tag: kind.write(err)}
    if not isinstance(err, BacktestError):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise _type_error("a BacktestError", err)
    if err.raw is not None:
        return err.raw
    # Built by hand without raw JSON: the tag alone is the closest faithful form.
    return err.kind if err.kind != BacktestError.KIND else None


# ============================================================================================
# Session events (§4.1)
# ============================================================================================

_PayloadDecoder: TypeAlias = _UHook


_new_slot_notification: Final[Callable[[int], SlotNotification]] = plain_constructor(
    SlotNotification
)
_new_session_event_v2: Final[Callable[[str, int, SessionEvent], SessionEventV2]] = (
    plain_constructor(SessionEventV2)
)
_SLOT_TAG: Final = "slotNotification"


def _unit_decoder(instance: object) -> _PayloadDecoder:
    def decode(_payload: Any) -> Any:
        return instance

    return decode


def _d_slot(payload: Any) -> SlotNotification:
    if type(payload) is int and 0 <= payload <= _U64_MAX:
        return _new_slot_notification(payload)
    raise _Mismatch(f"expected an unsigned integer slot, got {type(payload).__name__}")


_s_paused_event: Final = _conv.get_structure_hook(PausedEvent)
_s_discovery_event: Final = _conv.get_structure_hook(DiscoveryBatchEvent)
_s_completed: Final = _conv.get_structure_hook(Completed)


def _d_status(payload: Any) -> Status:
    """Hot path: a hand-written reader for ``{"status": …}``."""
    obj: dict[str, Any] = payload
    if type(obj) is dict:
        value = obj.get(_STATUS_KEY)
        if type(value) is str:
            return Status(_STATUS_BY_TEXT.get(value) or BacktestStatus(value))
    raise _Mismatch("status: expected an object with a status string")


_STATUS_KEY: Final = _key(Status, "status")

_READY: Final = ReadyForContinue()
_SUCCESS: Final = Success()

_EVENT_DECODERS: Final[Mapping[str, _PayloadDecoder]] = {
    "readyForContinue": _unit_decoder(_READY),
    "slotNotification": _d_slot,
    "paused": lambda p: Paused(_s_paused_event(p, PausedEvent)),
    "discoveryBatch": lambda p: DiscoveryBatch(_s_discovery_event(p, DiscoveryBatchEvent)),
    "error": lambda p: Error(decode_backtest_error(p)),
    "success": _unit_decoder(_SUCCESS),
    "completed": lambda p: _s_completed(p, Completed),
    "status": _d_status,
}
_EVENT_DECODERS_BY_KIND: Final[Mapping[str, _PayloadDecoder]] = {
    kind_key(tag): dec for tag, dec in _EVENT_DECODERS.items()
}
_EVENT_CLASSES: Final[frozenset[type]] = frozenset(
    {ReadyForContinue, SlotNotification, Paused, DiscoveryBatch, Error, Success, Completed, Status}
)


def _decode_event(raw: JsonValue) -> SessionEvent:
    """Adjacent, external or unknown (§4.1); never raises."""
    obj: dict[str, Any] = raw
    tag: Any
    payload: Any
    if type(obj) is dict:
        tag = obj.get(METHOD_KEY)
        if type(tag) is str:
            payload = obj.get(PARAMS_KEY)
        elif len(obj) == 1:
            ((tag, payload),) = obj.items()
        else:
            return UnknownSessionEvent(raw)
    elif type(raw) is str:
        tag, payload = raw, None
    else:
        return UnknownSessionEvent(raw)
    decoder = _EVENT_DECODERS.get(tag) or _EVENT_DECODERS_BY_KIND.get(kind_key(tag))
    if decoder is None:
        return UnknownSessionEvent(raw)
    try:
        event: SessionEvent = decoder(payload)
    except _Mismatch:
        return UnknownSessionEvent(raw)
    return event


def _encode_event(event: Any) -> JsonValue:
    if isinstance(event, UnknownSessionEvent):
        return event.raw
    if type(event) not in _EVENT_CLASSES:
        raise _type_error("a session event", event)
    message = _encode_message(event)
    if isinstance(event, Completed) and event.agent_stats is None:
        # §4.1: an event writes agent_stats only when it has some.
        del message[PARAMS_KEY][_key(Completed, "agent_stats")]
    return message


# ============================================================================================
# Responses (§4)
# ============================================================================================


_EV2_SESSION_ID, _EV2_SESSION_ID_ALT = _decode_keys(SessionEventV2, "session_id")[1]
_EV2_SEQ_ID, _EV2_SEQ_ID_ALT = _decode_keys(SessionEventV2, "seq_id")[1]
(_EV2_EVENT,) = _decode_keys(SessionEventV2, "event")[1]


def _d_session_event_v2(params: Any) -> SessionEventV2:
    """Hot path: hand-written to stay lean; same tolerance as the generic readers.

    The commonest event, an adjacent-tagged slot notification, is read inline; anything else
    goes through :func:`_decode_event`.
    """
    obj: dict[str, Any] = params
    if type(obj) is not dict:
        raise _Mismatch("expected an object")
    session_id = obj.get(_EV2_SESSION_ID, _MISSING)
    if session_id is _MISSING:
        session_id = obj.get(_EV2_SESSION_ID_ALT, _MISSING)
    if type(session_id) is not str:
        raise _Mismatch("session_id: expected a string")
    seq_id = obj.get(_EV2_SEQ_ID, _MISSING)
    if seq_id is _MISSING:
        seq_id = obj.get(_EV2_SEQ_ID_ALT, _MISSING)
    if type(seq_id) is not int or not 0 <= seq_id <= _U64_MAX:
        raise _Mismatch("seq_id: expected an unsigned integer")
    event = obj.get(_EV2_EVENT, _MISSING)
    if event is _MISSING:
        raise _Mismatch("missing event")
    inner: dict[str, Any] = event
    if type(inner) is dict and inner.get(METHOD_KEY) == _SLOT_TAG:
        slot = inner.get(PARAMS_KEY)
        if type(slot) is int and 0 <= slot <= _U64_MAX:
            return _new_session_event_v2(session_id, seq_id, _new_slot_notification(slot))
    return _new_session_event_v2(session_id, seq_id, _decode_event(event))


def _struct_decoder(cls: type) -> _PayloadDecoder:
    hook = _conv.get_structure_hook(cls)

    def decode(payload: Any) -> Any:
        return hook(payload, cls)

    return decode


_RESPONSE_DECODERS: Final[Mapping[str, _PayloadDecoder]] = {
    **_EVENT_DECODERS,
    "sessionCreated": _struct_decoder(SessionCreated),
    "sessionAttached": _struct_decoder(SessionAttached),
    "sessionsCreated": _struct_decoder(SessionsCreated),
    "sessionsCreatedV2": _struct_decoder(SessionsCreatedV2),
    "parallelSessionAttachedV2": _struct_decoder(ParallelSessionAttachedV2),
    "sessionEventV1": _struct_decoder(SessionEventV1),
    "sessionEventV2": _d_session_event_v2,
}

_RESPONSE_CLASSES: Final[frozenset[type]] = frozenset(
    {
        SessionCreated,
        SessionAttached,
        SessionsCreated,
        SessionsCreatedV2,
        ParallelSessionAttachedV2,
        SessionEventV1,
        SessionEventV2,
    }
    | _EVENT_CLASSES
)


def _newtype_value_hook(cls: type) -> _UHook:
    (field,) = _resolved_fields(cls)
    return _conv.get_unstructure_hook(field.type)


_NEWTYPE_WRITERS: Final[Mapping[type, tuple[str, _UHook]]] = {
    cls: (attrs.fields(cls)[0].name, _newtype_value_hook(cls))
    for cls in (SlotNotification, Paused, DiscoveryBatch, Error)
}


def _encode_message(message: Any) -> dict[str, Any]:
    """``{"method":…,"params":…}`` for a known request or response class."""
    tag, fields = SPELLINGS[type(message)]
    if fields is None:
        name, hook = _NEWTYPE_WRITERS[type(message)]
        try:
            return {METHOD_KEY: tag, PARAMS_KEY: hook(getattr(message, name))}
        except InvalidParams as exc:
            raise InvalidParams(f"{tag}: {exc}") from None
    if not fields:
        return {METHOD_KEY: tag}
    try:
        return {METHOD_KEY: tag, PARAMS_KEY: _conv.unstructure(message)}
    except InvalidParams as exc:
        raise InvalidParams(f"{tag}: {exc}") from None


def _encode_unknown(method: object, params: JsonValue) -> dict[str, Any]:
    if not isinstance(method, str):
        raise _type_error("a method string", method)
    return {METHOD_KEY: method} if params is None else {METHOD_KEY: method, PARAMS_KEY: params}


def decode_frame(text: str | bytes) -> tuple[int | None, BacktestResponse]:
    """Decode one control frame into its ``seqId`` (None when unnumbered) and its response.

    Raises:
        ProtocolError: the frame is not JSON, not an object, has no string ``method``, or
            carries a ``seqId`` that is not an unsigned integer.
    """
    try:
        obj: dict[str, Any] = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("not valid JSON", data=_excerpt_source(text)) from None
    if type(obj) is not dict:
        raise ProtocolError("not a JSON object", data=_excerpt_source(text))
    method = obj.get(METHOD_KEY)
    if type(method) is not str:
        raise ProtocolError("frame has no string 'method'", data=_excerpt_source(text))
    seq_id = obj.get(SEQ_ID_KEY, _MISSING)
    if seq_id is _MISSING:
        seq_id = obj.get(_SEQ_ID_ALT)
    if seq_id is not None and (type(seq_id) is not int or not 0 <= seq_id <= _U64_MAX):
        raise ProtocolError("frame has an invalid 'seqId'", data=_excerpt_source(text))
    params = obj.get(PARAMS_KEY)
    decoder = _RESPONSE_DECODERS.get(method)
    if decoder is None:
        return seq_id, UnknownResponse(method, _exact_params(text, params))
    try:
        response: BacktestResponse = decoder(params)
    except _Mismatch as exc:
        logger.warning("%s frame does not fit its method (%s); kept as unknown", method, exc)
        return seq_id, UnknownResponse(method, _exact_params(text, params))
    return seq_id, response


def decode_response(text: str | bytes) -> BacktestResponse:
    """Decode one control frame, dropping its ``seqId`` if it has one (see ``decode_frame``)."""
    return decode_frame(text)[1]


def encode_response(response: BacktestResponse, seq_id: int | None = None) -> str:
    """The reference server's canonical text for ``response``, numbered when ``seq_id`` is given.

    Raises:
        InvalidParams: a field holds a value the wire cannot carry.
    """
    if isinstance(response, UnknownResponse):
        message = _encode_unknown(response.method, response.params)
    elif type(response) in _RESPONSE_CLASSES:
        message = _encode_message(response)
    else:
        raise _type_error("a BacktestResponse", response)
    if seq_id is not None:
        message = {SEQ_ID_KEY: _u_u64(seq_id, None), **message}
    return _dumps(message)


# ============================================================================================
# Requests (§3)
# ============================================================================================

_REQUEST_CLASSES: Final[tuple[type, ...]] = (
    CreateBacktestSessionRequest,
    ContinueParams,
    ContinueToParams,
    ContinueSessionRequestV1,
    ContinueToSessionRequestV1,
    CloseBacktestSession,
    CloseSessionRequestV1,
    AttachBacktestSession,
    ResumeAttachedSession,
    AttachParallelControlSessionV2,
)


def _request_decoder(cls: type) -> _PayloadDecoder:
    fields = SPELLINGS[cls][1]
    if not fields:
        return _unit_decoder(cls())
    return _struct_decoder(cls)


_REQUEST_DECODERS: Final[Mapping[str, _PayloadDecoder]] = {
    tag: _request_decoder(cls) for cls in _REQUEST_CLASSES if (tag := SPELLINGS[cls][0]) is not None
}


def encode(request: BacktestRequest | UnknownRequest) -> str:
    """The exact canonical text of a request (§2.5, §3).

    Raises:
        InvalidParams: a field holds a value the wire cannot carry (negative or oversized
            integer, an address that is not base58, an agent that is not a JSON object, …).
    """
    if isinstance(request, UnknownRequest):
        return _dumps(_encode_unknown(request.method, request.params))
    if type(request) not in _REQUEST_CLASSES:
        raise _type_error("a BacktestRequest", request)
    return _dumps(_encode_message(request))


def encode_plain_continue(session_id: str, advance_count: int) -> str:
    """``encode(ContinueSessionRequestV1(session_id, ContinueParams(advance_count)))``, cheaply.

    Every sub-session of a parallel run sends the same few continues, which differ only in
    the session id, so the text around the id is made by :func:`encode` once per count.

    Raises:
        InvalidParams: as :func:`encode` would.
    """
    if type(session_id) is not str or type(advance_count) is not int:  # (True == 1, 1.0 == 1)
        return encode(ContinueSessionRequestV1(session_id, ContinueParams(advance_count)))
    head, tail = _plain_continue_parts(advance_count)
    return head + _dumps(session_id) + tail


_SESSION_MARK: Final = "\x00session\x00"


@functools.lru_cache(maxsize=32)
def _plain_continue_parts(advance_count: int) -> tuple[str, str]:
    text = encode(ContinueSessionRequestV1(_SESSION_MARK, ContinueParams(advance_count)))
    head, mark, tail = text.partition(_dumps(_SESSION_MARK))
    assert mark, "the session id is written as the JSON string of itself"
    return head, tail


def decode_request(text: str | bytes) -> BacktestRequest | UnknownRequest:
    """Server side: read a request in any tolerated form (§2.2, §3).

    Unknown methods, a missing method and params that do not fit come back as
    ``UnknownRequest`` with a reason, so the server can answer ``InvalidRequest``.

    Raises:
        ProtocolError: the text is not a JSON object.
    """
    obj = _loads_object(text)
    method = obj.get(METHOD_KEY)
    params = obj.get(PARAMS_KEY)
    if type(method) is not str:
        return UnknownRequest(None, params, "missing or non-string method")
    decoder = _REQUEST_DECODERS.get(method)
    if decoder is None:
        return UnknownRequest(method, params, f"unknown method {method[:60]!r}")
    try:
        request: BacktestRequest = decoder(params)
    except _Mismatch as exc:
        return UnknownRequest(method, params, f"params do not fit {method}: {exc}")
    return request


# ============================================================================================
# Available ranges (§1.5)
# ============================================================================================

_s_available_range: Final = _conv.get_structure_hook(AvailableRange)
_u_available_range: Final = _conv.get_unstructure_hook(AvailableRange)


def decode_available_ranges(body: bytes | str) -> list[AvailableRange]:
    """Read the ``/available-ranges`` body; entries that do not fit are skipped with a warning.

    Raises:
        ProtocolError: the body is not a JSON array.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProtocolError(
            "available ranges: not valid JSON", data=_excerpt_source(body)
        ) from None
    entries: list[Any] = value
    if type(entries) is not list:
        raise ProtocolError("available ranges: not a JSON array", data=_excerpt_source(body))
    ranges: list[AvailableRange] = []
    reasons: list[str] = []
    for entry in entries:
        try:
            ranges.append(_s_available_range(entry, AvailableRange))
        except _Mismatch as exc:
            reasons.append(str(exc))
    if reasons:
        logger.warning(
            "skipped %d unreadable available-range entries (first: %s)", len(reasons), reasons[0]
        )
    return ranges


def encode_available_ranges(ranges: Iterable[AvailableRange]) -> str:
    """The canonical camelCase array (§1.5), as the reference server serves it."""
    return _dumps([_u_available_range(r) for r in ranges])


def _check_tables() -> None:
    """Fail at import if the spelling table and the data classes drift apart."""
    for cls, (_tag, fields) in SPELLINGS.items():
        names = {f.name for f in _resolved_fields(cls)}
        if fields is None:
            if len(names) != 1:
                raise TypeError(f"{cls.__name__}: a newtype needs exactly one field")
        elif set(fields) != names:
            raise TypeError(f"{cls.__name__}: spelling table does not match its fields")
    for cls in _ERROR_CLASSES:
        if SPELLINGS[cls][0] != cls.KIND:
            raise TypeError(f"{cls.__name__}: tag differs from KIND")


def _build_hooks() -> None:
    """Build every hook now, so the first frame does not pay for it."""
    for cls, (_tag, fields) in SPELLINGS.items():
        if fields:
            _conv.get_structure_hook(cls)
            _conv.get_unstructure_hook(cls)


_check_tables()
_build_hooks()
