"""JSON text and JSON values: the one place where the wire meets orjson.

Every codec of the package writes its text through :func:`dumps` (or :func:`dumps_wide`, which
keeps integers beyond 64 bits), reads objects through :func:`loads_object`, and checks parsed
values with the same strict readers (``as_int`` accepts no ``bool``, nothing is coerced).
"""

from __future__ import annotations

__all__: list[str] = []

import json
from typing import Any, TypeAlias, cast

import orjson

from simtrio.errors import InvalidParams, ProtocolError

JsonValue: TypeAlias = Any
"""Raw JSON as orjson produces it (dict, list, str, int, float, bool or None)."""
JsonObject: TypeAlias = "dict[str, JsonValue]"
"""A JSON object as orjson produces it."""


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def dumps(value: JsonValue) -> str:
    """Compact JSON text; integers must fit 64 bits (the data plane's rule).

    Raises:
        InvalidParams: a value of a type JSON cannot hold, or an integer beyond 64 bits.
    """
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError as exc:  # orjson.JSONEncodeError: unsupported type, int beyond 64 bits
        raise InvalidParams(f"value cannot be encoded as JSON: {exc}") from None


def dumps_wide(value: Any) -> str:
    """Compact JSON text that also keeps integers beyond 64 bits (control-plane frames).

    Raises:
        InvalidParams: a value of a type JSON cannot hold, or a float that is not finite.
    """
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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def loads_object(text: str | bytes, subject: str = "") -> dict[str, Any]:
    """One JSON object; ``subject`` (``"rpc reply"``) starts the error messages.

    Raises:
        ProtocolError: the text is not JSON, or not an object.
    """
    prefix = f"{subject} is " if subject else ""
    try:
        obj: dict[str, Any] = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(f"{prefix}not valid JSON", data=excerpt_source(text)) from None
    if type(obj) is not dict:
        raise ProtocolError(f"{prefix}not a JSON object", data=excerpt_source(text))
    return obj


def excerpt_source(text: object) -> str | bytes | None:
    """What a :class:`~simtrio.errors.ProtocolError` may quote of an input."""
    if isinstance(text, str | bytes):
        return text
    if isinstance(text, bytearray | memoryview):
        return bytes(cast("bytes", text)[:200])
    return None


def _holds_float(value: object) -> bool:
    """Whether a decoded JSON value holds a float anywhere (cheap for the usual small params)."""
    items: Any
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        items = cast("dict[str, object]", value).values()
    elif isinstance(value, list):
        items = cast("list[object]", value)
    else:
        return False
    return any(_holds_float(item) for item in items)


def exact_params(text: str | bytes, params: Any, key: str) -> Any:
    """``params`` (member ``key`` of the object ``text``), re-read without loss when orjson
    may have rounded.

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
    return cast("dict[str, Any]", obj).get(key)


# --------------------------------------------------------------------------------------------
# Strict value readers: a value of the wrong JSON type is None, never coerced
# --------------------------------------------------------------------------------------------


def is_int(value: object) -> bool:
    """An integer, and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_int(value: JsonValue) -> int | None:
    return cast("int", value) if is_int(value) else None


def as_uint(value: JsonValue) -> int | None:
    number = as_int(value)
    return number if number is not None and number >= 0 else None


def as_object(value: JsonValue) -> JsonObject | None:
    return cast("JsonObject", value) if isinstance(value, dict) else None


def as_list(value: JsonValue) -> list[JsonValue] | None:
    # orjson lists hold JSON values; mypy already sees list[Any], pyright needs the hint.
    return value if isinstance(value, list) else None  # pyright: ignore[reportUnknownVariableType]
