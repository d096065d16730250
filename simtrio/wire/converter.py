"""The one cattrs converter of the wire, and every hook on it.

cattrs is the registry: one converter knows how every control-plane class is structured and
unstructured, builds each class's hook once from its spelling and dispatches by type. The hooks
themselves are strict, because cattrs' own primitive hooks coerce (``int("4001")``): structure
hooks (JSON value -> Python) raise :class:`Mismatch` and nothing else, unstructure hooks
(Python -> JSON value) validate and raise :class:`~simtrio.errors.InvalidParams`. Hooks for
attrs classes are generated once per class from :data:`~simtrio.wire.spellings.SPELLINGS`. The
codecs register the hooks for the two unions they own (session events, server errors) on
:data:`conv` when they are imported.

The one rule for hand-written readers: a message on a per-event hot path (the few control
events of :mod:`simtrio.wire.codec`'s fast paths, and the data plane's JSON-RPC envelopes in
:mod:`simtrio.wire.rpc`) is read by hand over the same strict value readers
(:mod:`simtrio.wire.jsontext`); everything else goes through this converter.
"""

from __future__ import annotations

__all__: list[str] = []

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import NoneType, UnionType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    TypeAlias,
    TypeGuard,
    Union,
    cast,
    get_args,
    get_origin,
)

import attrs
import cattrs

from simtrio.errors import InvalidParams
from simtrio.wire.base58 import address_value, sort_addresses
from simtrio.wire.rules import I64_MAX, I64_MIN, U64_MAX, UINT_NAMES, kind_key
from simtrio.wire.spellings import (
    DECODE_DEFAULTS,
    SPELLINGS,
    UNSIGNED_BOUNDS,
    decode_keys,
    resolved_fields,
)
from simtrio.wire.types import (
    AccountData,
    AgentStatsReport,
    AttachParallelControlSessionV2,
    BacktestStatus,
    ContinueParams,
    CreateBacktestSessionRequest,
    DiscoveryFilter,
    ProgramExecuted,
    UnknownDiscoveryFilter,
)

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue


class Mismatch(Exception):
    """A JSON value that does not fit where it was found (internal; never escapes)."""


MISSING: Final[Any] = object()
_REQUIRED: Final[Any] = object()

Hook: TypeAlias = Callable[[Any, Any], Any]
"""A structure hook: ``(json_value, type) -> value``."""
UHook: TypeAlias = Callable[[Any], Any]
"""An unstructure hook: ``value -> json_value``."""

conv: Final = cattrs.Converter(detailed_validation=False)
"""The one converter; every hook on it is strict, so nothing is coerced."""


# ============================================================================================
# Structure hooks (JSON value -> Python), strict: they raise Mismatch and nothing else
# ============================================================================================


def _unsigned_hook(limit: int) -> Hook:
    expected = f"expected a {UINT_NAMES[limit]}"

    def hook(value: Any, _: Any) -> int:
        if type(value) is int and 0 <= value <= limit:
            return value
        raise Mismatch(f"{expected}, got {type(value).__name__}")

    return hook


_s_u64: Final = _unsigned_hook(U64_MAX)


def _s_i64(value: Any, _: Any) -> int:
    if type(value) is int and I64_MIN <= value <= I64_MAX:
        return value
    raise Mismatch(f"expected a signed 64-bit integer, got {type(value).__name__}")


def _s_str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    raise Mismatch(f"expected a string, got {type(value).__name__}")


def _s_bool(value: Any, _: Any) -> bool:
    if type(value) is bool:
        return value
    raise Mismatch(f"expected a boolean, got {type(value).__name__}")


def _s_raw(value: Any, _: Any) -> Any:
    return value


STATUS_BY_TEXT: Final[Mapping[str, BacktestStatus]] = {m.value: m for m in BacktestStatus}


def _s_status(value: Any, _: Any) -> BacktestStatus:
    if type(value) is str:
        return STATUS_BY_TEXT.get(value) or BacktestStatus(value)
    raise Mismatch(f"expected a status string, got {type(value).__name__}")


def _s_i64_map(value: Any, _: Any) -> dict[str, int]:
    obj: dict[str, Any] = value
    if type(obj) is not dict:
        raise Mismatch("expected an object")
    return {k: _s_i64(v, None) for k, v in obj.items()}


_FIELD_DECODERS: Final[Mapping[tuple[type, str], Hook]] = {
    (AgentStatsReport, "expected_gain_by_mint"): _s_i64_map,
}
"""Fields whose type alone does not say how to read them (the only signed integers)."""


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


def _s_optional_factory(tp: Any) -> Hook:
    inner_tp = _optional_inner(tp)
    inner = conv.get_structure_hook(inner_tp)

    def hook(value: Any, _: Any) -> Any:
        return None if value is None else inner(value, inner_tp)

    return hook


def _s_list_factory(tp: Any) -> Hook:
    (item_tp,) = get_args(tp)
    item = conv.get_structure_hook(item_tp)

    def hook(value: Any, _: Any) -> list[Any]:
        items: list[Any] = value
        if type(items) is not list:
            raise Mismatch(f"expected an array, got {type(value).__name__}")
        return [item(v, item_tp) for v in items]

    return hook


def _s_map_factory(tp: Any) -> Hook:
    _, item_tp = get_args(tp)
    item = conv.get_structure_hook(item_tp)

    def hook(value: Any, _: Any) -> dict[str, Any]:
        obj: dict[str, Any] = value
        if type(obj) is not dict:
            raise Mismatch(f"expected an object, got {type(value).__name__}")
        return {k: item(v, item_tp) for k, v in obj.items()}

    return hook


FieldReader: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]


def fields_reader(cls: type) -> FieldReader:
    """Build, once, the function that reads an object's fields into constructor kwargs."""
    specs: list[tuple[str, str, tuple[str, ...], Hook, Any, Any]] = []
    for field in resolved_fields(cls):
        bound = UNSIGNED_BOUNDS.get((cls, field.name))
        if bound is not None:
            hook = _unsigned_hook(bound)
            if _is_optional(field.type):
                hook = _optional_wrap(hook)
        elif (cls, field.name) in _FIELD_DECODERS:
            hook = _FIELD_DECODERS[cls, field.name]
        else:
            hook = conv.get_structure_hook(field.type)
        if (cls, field.name) in DECODE_DEFAULTS:
            default = DECODE_DEFAULTS[cls, field.name]
        elif field.default is attrs.NOTHING:
            default = _REQUIRED
        else:
            default = MISSING  # let the class apply its own default
        label, keys = decode_keys(cls, field.name)
        specs.append((field.name, label, keys, hook, field.type, default))
    frozen_specs = tuple(specs)

    def read(obj: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, label, keys, hook, tp, default in frozen_specs:
            value = MISSING
            for key in keys:
                value = obj.get(key, MISSING)
                if value is not MISSING:
                    break
            if value is MISSING:
                if default is _REQUIRED:
                    raise Mismatch(f"missing {label}")
                if default is not MISSING:
                    kwargs[name] = default
                continue
            try:
                kwargs[name] = hook(value, tp)
            except Mismatch as exc:
                raise Mismatch(f"{label}: {exc}") from None
        return kwargs

    return read


def _optional_wrap(inner: Hook) -> Hook:
    def hook(value: Any, tp: Any) -> Any:
        return None if value is None else inner(value, tp)

    return hook


def _s_attrs_factory(cls: type) -> Hook:
    read = fields_reader(cls)

    def hook(value: Any, _: Any) -> Any:
        obj: dict[str, Any] = value
        if type(obj) is not dict:
            raise Mismatch(f"expected an object, got {type(value).__name__}")
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


_PROGRAM_EXECUTED_KEY: Final = kind_key("ProgramExecuted")


# ============================================================================================
# Unstructure hooks (Python -> JSON value), validating: they raise InvalidParams
# ============================================================================================


def type_error(expected: str, value: object) -> InvalidParams:
    return InvalidParams(f"expected {expected}, got {type(value).__name__}")


def _unsigned_out(limit: int) -> Hook:
    expected = f"expected a {UINT_NAMES[limit]}"

    def hook(value: Any, _: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit:
            return int(value)
        raise InvalidParams(f"{expected}, got {value!r:.40}")

    return hook


u_u64: Final = _unsigned_out(U64_MAX)


def _u_i64(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and I64_MIN <= value <= I64_MAX:
        return int(value)
    raise InvalidParams(f"expected a signed 64-bit integer, got {value!r:.40}")


def _u_str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise type_error("a string", value)


def _u_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise type_error("a boolean", value)


def _u_status(value: Any, _: Any) -> str:
    if isinstance(value, BacktestStatus):
        return value.value
    return _u_str(value, None)


def _u_optional_factory(tp: Any) -> UHook:
    inner_tp = _optional_inner(tp)
    inner = conv.get_unstructure_hook(inner_tp)

    def hook(value: Any, _: Any = None) -> Any:
        return None if value is None else inner(value)

    return hook


def _u_list_factory(tp: Any) -> UHook:
    (item_tp,) = get_args(tp)
    item = conv.get_unstructure_hook(item_tp)

    def hook(value: Any, _: Any = None) -> list[Any]:
        return [item(v) for v in _sequence(value, "a list")]

    return hook


def _u_map_factory(tp: Any) -> UHook:
    _, item_tp = get_args(tp)
    item = conv.get_unstructure_hook(item_tp)

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
        raise type_error(expected, value)
    return value


def _sequence(value: object, expected: str) -> Sequence[Any]:
    if not _is_sequence(value):
        raise type_error(expected, value)
    return value


def _u_account_states(value: Any, _: Any = None) -> dict[str, Any]:
    states = _mapping(value, "a mapping of address to AccountData")
    # Distinct 32-byte addresses have distinct values, so the sort never compares accounts.
    items = sorted((address_value(k), k, v) for k, v in states.items())
    account = conv.get_unstructure_hook(AccountData)
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
    return {k: u_u64(cursors[k], None) for k in keys}


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


def _bounded_out(limit: int, *, optional: bool) -> UHook:
    unsigned = _unsigned_out(limit)

    def hook(value: Any) -> Any:
        return None if (optional and value is None) else unsigned(value, None)

    return hook


_FIELD_ENCODERS: Final[Mapping[tuple[type, str], UHook]] = {
    (CreateBacktestSessionRequest, "signer_filter"): _u_signers,
    (CreateBacktestSessionRequest, "agents"): _u_agents,
    (ContinueParams, "modify_account_states"): _u_account_states,
    (AgentStatsReport, "expected_gain_by_mint"): _u_gain_by_mint,
    (AttachParallelControlSessionV2, "last_sequences"): _u_cursors,
}


FieldWriter: TypeAlias = Callable[[Any], dict[str, Any]]


def fields_writer(cls: type) -> FieldWriter:
    """Build, once, the function that writes an instance's fields in table order."""
    fields = SPELLINGS[cls][1]
    if fields is None:
        raise TypeError(f"{cls.__name__} is a newtype variant, not a struct")
    types_by_name = {f.name: f.type for f in resolved_fields(cls)}
    specs: list[tuple[str, str, UHook]] = []
    for name, key in fields.items():
        hook: UHook
        custom = _FIELD_ENCODERS.get((cls, name))
        bound = UNSIGNED_BOUNDS.get((cls, name))
        if custom is not None:
            hook = custom
        elif bound is not None:
            hook = _bounded_out(bound, optional=_is_optional(types_by_name[name]))
        else:
            hook = conv.get_unstructure_hook(types_by_name[name])
        specs.append((name, key, hook))
    frozen_specs = tuple(specs)

    def write(obj: Any) -> dict[str, Any]:
        if not isinstance(obj, cls):
            raise type_error(cls.__name__, obj)
        out: dict[str, Any] = {}
        for name, key, hook in frozen_specs:
            try:
                out[key] = hook(getattr(obj, name))
            except InvalidParams as exc:
                raise InvalidParams(f"{key}: {exc}") from None
        return out

    return write


def _u_attrs_factory(cls: type) -> UHook:
    return fields_writer(cls)


def _u_filter(value: Any) -> JsonValue:
    if isinstance(value, ProgramExecuted):
        tag = SPELLINGS[ProgramExecuted][0]
        return {tag: _u_str(value.program_id, None)}
    if isinstance(value, UnknownDiscoveryFilter):
        return value.raw
    raise type_error("a DiscoveryFilter", value)


# ============================================================================================
# Registration: each predicate or class with its reading hook and its writing hook
# ============================================================================================


def _any_type(_tp: Any) -> bool:
    return True


def _no_hook(tp: Any) -> Any:
    raise TypeError(f"simtrio codec has no hook for {tp!r}")


def _without_path(hook: Hook) -> UHook:
    return lambda value: hook(value, None)


# Later registrations take precedence in cattrs, so specific types go last.
for _predicate, _reader, _writer in (
    (_any_type, _no_hook, _no_hook),
    (attrs.has, _s_attrs_factory, _u_attrs_factory),
    (_is_optional, _s_optional_factory, _u_optional_factory),
    (_is_list, _s_list_factory, _u_list_factory),
    (_is_str_map, _s_map_factory, _u_map_factory),
):
    conv.register_structure_hook_factory(_predicate, _reader)
    conv.register_unstructure_hook_factory(_predicate, _writer)
# cattrs' built-in class hooks (which coerce) win over predicates, so classes are overridden
# as classes.
for _cls, _read, _write in (
    (int, _s_u64, u_u64),
    (str, _s_str, _u_str),
    (bool, _s_bool, _u_bool),
    (BacktestStatus, _s_status, _u_status),
):
    conv.register_structure_hook(_cls, _read)
    conv.register_unstructure_hook(_cls, _without_path(_write))
conv.register_structure_hook_func(lambda tp: tp is Any, _s_raw)
conv.register_unstructure_hook_func(lambda tp: tp is Any, lambda v: v)
conv.register_structure_hook_func(lambda tp: tp == DiscoveryFilter, _s_filter)
conv.register_unstructure_hook_func(lambda tp: tp == DiscoveryFilter, _u_filter)
