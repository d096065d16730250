"""Server errors on the wire (protocol §5.2): tolerant decode, canonical encode.

Known variants are read and written from :data:`~simtrio.wire.spellings.SPELLINGS` through the
shared converter; anything else is kept as an ``UnknownBacktestError`` holding its raw JSON, so
it re-encodes unchanged.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Any, Final

import attrs

from simtrio.wire.backtest_errors import KNOWN_ERRORS, BacktestError, UnknownBacktestError
from simtrio.wire.converter import (
    FieldReader,
    FieldWriter,
    Hook,
    Mismatch,
    conv,
    fields_reader,
    fields_writer,
    type_error,
)
from simtrio.wire.rules import kind_key
from simtrio.wire.spellings import (
    ERROR_PAYLOAD_KEYS,
    ERROR_TAG_KEYS,
    SPELLINGS,
    resolved_fields,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simtrio.wire.jsontext import JsonValue


def _as_object(value: Any) -> dict[str, Any] | None:
    """``value`` if it is a JSON object (as orjson builds them), else None."""
    obj: dict[str, Any] = value
    return obj if type(obj) is dict else None


@attrs.frozen
class _ErrorKind:
    cls: type[BacktestError]
    tag: str
    read: FieldReader
    single: tuple[str, Hook, Any] | None
    """The one field of a single-field kind, for the bare-value form."""
    unit: bool
    write: FieldWriter | None


def _error_kind(cls: type[BacktestError]) -> _ErrorKind:
    tag = SPELLINGS[cls][0]
    if tag is None:
        raise TypeError(f"{cls.__name__} has no tag")
    fields = resolved_fields(cls)
    single = None
    if len(fields) == 1:
        single = (fields[0].name, conv.get_structure_hook(fields[0].type), fields[0].type)
    return _ErrorKind(
        cls=cls,
        tag=tag,
        read=fields_reader(cls),
        single=single,
        unit=not fields,
        write=fields_writer(cls) if fields else None,
    )


_ERROR_KINDS: Final[Mapping[str, _ErrorKind]] = {
    kind_key(k.tag): k for k in map(_error_kind, KNOWN_ERRORS)
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
    except Mismatch:
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
    for tag_key in ERROR_TAG_KEYS:
        tag = obj.get(tag_key)
        if type(tag) is str:
            payload: Any = obj
            for payload_key in ERROR_PAYLOAD_KEYS:
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
        raise type_error("a BacktestError", err)
    if err.raw is not None:
        return err.raw
    # Built by hand without raw JSON: the tag alone is the closest faithful form.
    return err.kind if err.kind != BacktestError.KIND else None


def _structure_error(value: Any, _: Any) -> BacktestError:
    return decode_backtest_error(value)


conv.register_structure_hook_func(lambda tp: tp is BacktestError, _structure_error)
conv.register_unstructure_hook_func(lambda tp: tp is BacktestError, encode_backtest_error)
