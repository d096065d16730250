"""Standard Solana pubsub on the reference server's data plane: ``logsSubscribe``.

The request shape is Solana's, ``params = [{"mentions": [address]}, config]``, with the
data-plane options in the config (``compression``, ``replayFromSlot``); notifications are
``logsNotification`` with ``{"context": {"slot"}, "value": {"signature", "err", "logs"}}``.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, TypeAlias, cast

import attrs
import orjson

from simtrio.wire.jsontext import as_int
from simtrio.wire.rpc import (
    COMPRESSION_ZSTD,
    LOGS_NOTIFICATION,
    LOGS_SUBSCRIBE,
    LOGS_UNSUBSCRIBE,
    REPLAY_KEYS,
)
from simtrio.wire.rules import I64_MAX, I64_MIN

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue

_Object: TypeAlias = "dict[str, JsonValue]"


@attrs.frozen
class LogsSubscribe:
    """Logs of the transactions that mention ``address``."""

    id: int
    address: str
    replay_from_slot: int | None
    compression: bool


@attrs.frozen
class LogsUnsubscribe:
    id: int
    subscription: int


@attrs.frozen
class LogsRequestError:
    """A logs request that cannot be served (JSON-RPC -32602)."""

    id: int | None
    reason: str


def decode_logs_request(
    text: str | bytes,
) -> LogsSubscribe | LogsUnsubscribe | LogsRequestError | None:
    """Read a ``logsSubscribe``/``logsUnsubscribe`` request; None for any other message."""
    probe = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    if b'"logs' not in probe:
        return None
    try:
        parsed: JsonValue = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    obj = cast("_Object", parsed)
    method = obj.get("method")
    if method not in (LOGS_SUBSCRIBE, LOGS_UNSUBSCRIBE):
        return None
    request_id = as_int(obj.get("id"))
    if request_id is None:
        return LogsRequestError(None, "missing or non-integer id")
    raw_params = obj.get("params")
    params: list[JsonValue] = raw_params if isinstance(raw_params, list) else []  # pyright: ignore[reportUnknownVariableType]
    if method == LOGS_UNSUBSCRIBE:
        subscription = as_int(params[0]) if params else None
        if subscription is None or subscription < 0:
            return LogsRequestError(request_id, "expected [subscription id]")
        return LogsUnsubscribe(request_id, subscription)
    address = _mentioned(params[0] if params else None)
    if address is None:
        return LogsRequestError(request_id, 'expected [{"mentions": [one address]}, config]')
    config = params[1] if len(params) > 1 else None
    replay: int | None = None
    compression = False
    if isinstance(config, dict):
        options = cast("_Object", config)
        for key in REPLAY_KEYS:
            if options.get(key) is not None:
                replay = as_int(options[key])
                if replay is None or not I64_MIN <= replay <= I64_MAX:
                    return LogsRequestError(request_id, f"{key} must be a slot number")
                break
        compression = options.get("compression") == COMPRESSION_ZSTD
    return LogsSubscribe(request_id, address, replay, compression)


def _mentioned(value: JsonValue) -> str | None:
    if not isinstance(value, dict):
        return None
    mentions = cast("_Object", value).get("mentions")
    if not isinstance(mentions, list):
        return None
    items: list[JsonValue] = mentions  # pyright: ignore[reportUnknownVariableType]
    if len(items) != 1:
        return None
    address = items[0]
    return address if isinstance(address, str) else None


def logs_notification_text(slot: int, signature: str, err: JsonValue, logs: tuple[str, ...]) -> str:
    """The notification, encoded for subscription 0 (the data log patches the id in)."""
    value: _Object = {"signature": signature, "err": err, "logs": list(logs)}
    result: _Object = {"context": {"slot": slot}, "value": value}
    message: _Object = {
        "jsonrpc": "2.0",
        "method": LOGS_NOTIFICATION,
        "params": {"subscription": 0, "result": result},
    }
    return orjson.dumps(message).decode("utf-8")
