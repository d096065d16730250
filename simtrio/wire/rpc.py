"""Data-plane JSON-RPC messages (protocol §9): subscribe requests, acks, notifications, terminals.

The client side decodes tolerantly (:func:`decode_rpc`) and encodes exactly
(:meth:`Subscribe.encode`); the reference server uses the mirror image
(:func:`decode_rpc_request`, :func:`encode_rpc`), so both ends share one set of spellings.
Raw payloads (``pre``, ``post``, transactions) are kept as parsed JSON and never reshaped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import attrs
import orjson

from simtrio.errors import InvalidParams, ProtocolError, excerpt
from simtrio.wire.construct import plain_constructor
from simtrio.wire.types import JsonValue

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ACCOUNT_DIFF_NOTIFICATION",
    "ACCOUNT_DIFF_SUBSCRIBE",
    "ACCOUNT_DIFF_UNSUBSCRIBE",
    "INVALID_PARAMS",
    "LOGS_NOTIFICATION",
    "LOGS_SUBSCRIBE",
    "LOGS_UNSUBSCRIBE",
    "METHOD_NOT_FOUND",
    "SUBSCRIPTION_COMPLETE",
    "TRANSACTION_NOTIFICATION",
    "TRANSACTION_SUBSCRIBE",
    "TRANSACTION_UNSUBSCRIBE",
    "AccountDiffNotification",
    "InvalidRpcRequest",
    "JsonValue",
    "LogsNotification",
    "RpcContext",
    "RpcMessage",
    "RpcRequest",
    "Subscribe",
    "SubscribeAck",
    "SubscribeError",
    "SubscriptionComplete",
    "TransactionNotification",
    "UnknownRpcMessage",
    "UnknownRpcRequest",
    "Unsubscribe",
    "decode_rpc",
    "decode_rpc_request",
    "decode_subscribe_request",
    "encode_rpc",
    "encode_unsubscribe_reply",
]

# Method names of the data plane, spelled once.
ACCOUNT_DIFF_SUBSCRIBE: Final = "accountDiffSubscribe"
TRANSACTION_SUBSCRIBE: Final = "transactionSubscribe"
ACCOUNT_DIFF_UNSUBSCRIBE: Final = "accountDiffUnsubscribe"
TRANSACTION_UNSUBSCRIBE: Final = "transactionUnsubscribe"
ACCOUNT_DIFF_NOTIFICATION: Final = "accountDiffNotification"
TRANSACTION_NOTIFICATION: Final = "transactionNotification"
SUBSCRIPTION_COMPLETE: Final = "subscriptionComplete"
LOGS_SUBSCRIBE: Final = "logsSubscribe"
LOGS_UNSUBSCRIBE: Final = "logsUnsubscribe"
LOGS_NOTIFICATION: Final = "logsNotification"

METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602

_SUBSCRIBE_METHODS: Final = frozenset({ACCOUNT_DIFF_SUBSCRIBE, TRANSACTION_SUBSCRIBE})
_UNSUBSCRIBE_METHODS: Final = frozenset({ACCOUNT_DIFF_UNSUBSCRIBE, TRANSACTION_UNSUBSCRIBE})
# What a client may send: the simulator's kinds, and standard Solana ``logsSubscribe``.
_CLIENT_SUBSCRIBE_METHODS: Final = _SUBSCRIBE_METHODS | {LOGS_SUBSCRIBE}
_COMPRESSION_ZSTD: Final = "zstd"
_REPLAY_KEYS: Final = ("replayFromSlot", "replay_from_slot")
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

_JsonObject: TypeAlias = "dict[str, JsonValue]"


# --------------------------------------------------------------------------------------------
# Requests (client -> server)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Subscribe:
    """``accountDiffSubscribe`` / ``transactionSubscribe`` / ``logsSubscribe`` for one program
    id (§9.2; chain C5 for logs, whose filter is ``{"mentions": [program id]}``).

    ``replay_from_slot`` is set only on re-subscriptions after a reconnect. ``compression``
    is always on for simtrio's clients; the field exists so the server side can tell a
    subscriber that did not ask for it.
    """

    method: str
    id: int
    program_id: str
    replay_from_slot: int | None = None
    compression: bool = True

    def __attrs_post_init__(self) -> None:
        # Checked here so a bad request fails when it is built, before any I/O.
        if self.method not in _CLIENT_SUBSCRIBE_METHODS:
            raise InvalidParams(f"not a subscribe method: {self.method!r}")
        if not _is_int(self.id):
            raise InvalidParams("subscribe id must be an int")
        if not _is_str(self.program_id):
            raise InvalidParams("program id must be a str")
        replay = self.replay_from_slot
        if replay is not None and not (_is_int(replay) and _I64_MIN <= replay <= _I64_MAX):
            raise InvalidParams("replay_from_slot must be a signed 64-bit int or None")

    def encode(self) -> str:
        """The exact canonical text (compact, fixed key order)."""
        config: _JsonObject = {}
        target: JsonValue = self.program_id
        if self.method == LOGS_SUBSCRIBE:
            target = {"mentions": [self.program_id]}
            config["commitment"] = "confirmed"
        if self.compression:
            config["compression"] = _COMPRESSION_ZSTD
        if self.replay_from_slot is not None:
            config["replayFromSlot"] = self.replay_from_slot
        return _dumps(
            {
                "jsonrpc": "2.0",
                "id": self.id,
                "method": self.method,
                "params": [target, config],
            }
        )


@attrs.frozen
class Unsubscribe:
    """``accountDiffUnsubscribe`` / ``transactionUnsubscribe`` (§9.10); the server answers true."""

    method: str
    id: int
    subscription: int


@attrs.frozen
class UnknownRpcRequest:
    """A request for a method the data plane does not serve (JSON-RPC -32601)."""

    id: int | None
    method: str

    @property
    def code(self) -> int:
        return METHOD_NOT_FOUND

    def error_reply(self) -> SubscribeError:
        """The JSON-RPC error the server sends back."""
        return SubscribeError(
            self.id, METHOD_NOT_FOUND, f"method not found: {excerpt(self.method)}"
        )


@attrs.frozen
class InvalidRpcRequest:
    """A request that could not be read (JSON-RPC -32602); ``id`` is None when unknown."""

    id: int | None
    reason: str

    @property
    def code(self) -> int:
        return INVALID_PARAMS

    def error_reply(self) -> SubscribeError:
        """The JSON-RPC error the server sends back."""
        return SubscribeError(self.id, INVALID_PARAMS, f"invalid params: {self.reason}")


RpcRequest: TypeAlias = Subscribe | Unsubscribe | UnknownRpcRequest | InvalidRpcRequest


def decode_rpc_request(text: str | bytes) -> RpcRequest:
    """Read one inbound data-plane request on the server side; never raises.

    Tolerant as §9.2 and §12.7 ask: the config object is open (unknown keys ignored, a
    missing or non-object config means "no options"), ``replayFromSlot`` is also accepted as
    ``replay_from_slot``, and the ``jsonrpc`` member is not checked. A request id that is not
    an integer cannot be echoed, so the request is reported invalid with no id.
    """
    try:
        parsed: JsonValue = orjson.loads(text)
    except orjson.JSONDecodeError:
        return InvalidRpcRequest(None, "malformed JSON")
    obj = _as_object(parsed)
    if obj is None:
        return InvalidRpcRequest(None, "request is not a JSON object")
    method = obj.get("method")
    if not isinstance(method, str):
        return InvalidRpcRequest(_as_int(obj.get("id")), "missing method")
    request_id = _as_int(obj.get("id"))
    if request_id is None:
        return InvalidRpcRequest(None, "missing or non-integer id")
    if method in _SUBSCRIBE_METHODS:
        return _decode_subscribe(obj, method, request_id)
    if method == LOGS_SUBSCRIBE:
        return _decode_logs_subscribe(obj, request_id)
    if method in _UNSUBSCRIBE_METHODS or method == LOGS_UNSUBSCRIBE:
        params = _as_list(obj.get("params"))
        subscription = _as_uint(params[0]) if params else None
        if subscription is None:
            return InvalidRpcRequest(request_id, "expected [subscription id]")
        return Unsubscribe(method, request_id, subscription)
    return UnknownRpcRequest(request_id, method)


decode_subscribe_request = decode_rpc_request
"""Alias of :func:`decode_rpc_request`, named after its main use."""


def _decode_subscribe(obj: _JsonObject, method: str, request_id: int) -> RpcRequest:
    params = _as_list(obj.get("params"))
    if not params:
        return InvalidRpcRequest(request_id, "expected [program id, config]")
    program_id = params[0]
    if not isinstance(program_id, str):
        return InvalidRpcRequest(request_id, "program id must be a string")
    config = _as_object(params[1]) if len(params) > 1 else None
    if config is None:
        return Subscribe(method, request_id, program_id, None, compression=False)
    replay: int | None = None
    for key in _REPLAY_KEYS:
        if key in config and config[key] is not None:
            value = _as_int(config[key])
            if value is None or not _I64_MIN <= value <= _I64_MAX:
                return InvalidRpcRequest(request_id, f"{key} must be a slot number")
            replay = value
            break
    compression = config.get("compression") == _COMPRESSION_ZSTD
    return Subscribe(method, request_id, program_id, replay, compression=compression)


def _decode_logs_subscribe(obj: _JsonObject, request_id: int) -> RpcRequest:
    """``logsSubscribe``: the filter must mention exactly one program, as simtrio sends it."""
    params = _as_list(obj.get("params")) or []
    target = _as_object(params[0]) if params else None
    mentions = _as_list(target.get("mentions")) if target is not None else None
    if mentions is None or len(mentions) != 1 or not isinstance(mentions[0], str):
        return InvalidRpcRequest(request_id, 'expected [{"mentions": [one program id]}, config]')
    program_id: str = mentions[0]
    rewritten: _JsonObject = {"params": [program_id, *params[1:]]}
    return _decode_subscribe(rewritten, LOGS_SUBSCRIBE, request_id)


def encode_unsubscribe_reply(request_id: int | None, result: bool = True) -> str:
    """The server's reply to an :class:`Unsubscribe`."""
    return _dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


# --------------------------------------------------------------------------------------------
# Server -> client messages
# --------------------------------------------------------------------------------------------


@attrs.frozen
class RpcContext:
    """The ``context`` of a notification; users read ``notification.context.slot``."""

    slot: int


@attrs.frozen
class SubscribeAck:
    """The ack of a subscribe: ``subscription`` is the id later notifications carry."""

    id: int
    subscription: int


@attrs.frozen
class SubscribeError:
    """A JSON-RPC error reply; ``id`` is None when the server could not read the request id."""

    id: int | None
    code: int
    message: str


@attrs.frozen
class AccountDiffNotification:
    """An account diff: ``pre`` is None for a created account, ``post`` for a deleted one."""

    subscription: int
    slot: int
    account: str | None = None
    signature: str | None = None
    pre: JsonValue = None
    post: JsonValue = None

    @property
    def context(self) -> RpcContext:
        return RpcContext(self.slot)


@attrs.frozen
class TransactionNotification:
    """A transaction; ``transaction`` is the raw ``getTransaction``-shaped object."""

    subscription: int
    slot: int
    transaction: JsonValue

    @property
    def context(self) -> RpcContext:
        return RpcContext(self.slot)


@attrs.frozen
class LogsNotification:
    """A ``logsNotification``: one transaction's log lines; ``err`` is its raw JSON error."""

    subscription: int
    slot: int
    signature: str
    err: JsonValue
    logs: tuple[str, ...]

    @property
    def context(self) -> RpcContext:
        return RpcContext(self.slot)


@attrs.frozen
class SubscriptionComplete:
    """The terminal marker: nothing more will arrive for ``subscription``."""

    subscription: int


@attrs.frozen
class UnknownRpcMessage:
    """Anything else that is a JSON object; logged and dropped by the client."""

    raw: _JsonObject


RpcMessage: TypeAlias = (
    SubscribeAck
    | SubscribeError
    | AccountDiffNotification
    | TransactionNotification
    | LogsNotification
    | SubscriptionComplete
    | UnknownRpcMessage
)


def decode_rpc(text: str | bytes) -> RpcMessage:
    """Decode one inbound data-plane message (already decompressed) on the client side.

    Shapes that are JSON objects but not a message simtrio understands become
    :class:`UnknownRpcMessage`; values are never coerced (a slot is a non-negative JSON
    integer, never a bool, float or string).

    Raises:
        ProtocolError: the input is not one JSON object (this fails the connection).
    """
    try:
        parsed: JsonValue = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("data-plane message is not valid JSON", data=text) from None
    obj = _as_object(parsed)
    if obj is None:
        raise ProtocolError("data-plane message is not a JSON object", data=text)
    if obj.get("method") == ACCOUNT_DIFF_NOTIFICATION:
        diff = _fast_account_diff(obj.get("params"))
        if diff is not None:
            return diff
    return _decode_object(obj) or UnknownRpcMessage(obj)


_new_account_diff: Final[
    Callable[[int, int, str | None, str | None, JsonValue, JsonValue], AccountDiffNotification]
] = plain_constructor(AccountDiffNotification)


def _fast_account_diff(value: JsonValue) -> AccountDiffNotification | None:
    """Hot path: the usual shape of an account diff, read inline; None sends it the long way.

    orjson builds only exact ``dict``/``str``/``int``/``bool`` values, so the ``type() is``
    checks here accept exactly what the generic readers accept; anything else (a missing
    context, a wrong type) falls back to :func:`_decode_object`, which decides.
    """
    params: dict[str, Any] = value
    if type(params) is not dict:
        return None
    subscription: Any = params.get("subscription")
    found: Any = params.get("result")
    result: dict[str, Any] = found
    if type(subscription) is not int or subscription < 0 or type(result) is not dict:
        return None
    found = result.get("context")
    context: dict[str, Any] = found
    if type(context) is not dict:
        return None
    slot: Any = context.get("slot")
    if type(slot) is not int or slot < 0:
        return None
    account: Any = result.get("account")
    signature: Any = result.get("signature")
    if (account is not None and type(account) is not str) or (
        signature is not None and type(signature) is not str
    ):
        return None
    return _new_account_diff(
        subscription, slot, account, signature, result.get("pre"), result.get("post")
    )


def _decode_object(obj: _JsonObject) -> RpcMessage | None:
    method = obj.get("method")
    if method is not None:
        params = _as_object(obj.get("params"))
        if not isinstance(method, str) or params is None:
            return None
        subscription = _as_uint(params.get("subscription"))
        if subscription is None:
            return None
        if method == SUBSCRIPTION_COMPLETE:
            return SubscriptionComplete(subscription)
        result = _as_object(params.get("result"))
        if result is None:
            return None
        if method == ACCOUNT_DIFF_NOTIFICATION:
            return _decode_account_diff(subscription, result)
        if method == TRANSACTION_NOTIFICATION:
            return _decode_transaction(subscription, result)
        if method == LOGS_NOTIFICATION:
            return _decode_logs(subscription, result)
        return None

    request_id = _as_int(obj.get("id"))
    if "error" in obj:
        error = _as_object(obj["error"])
        if error is None:
            return None
        code = _as_int(error.get("code"))
        message = error.get("message", "")
        if code is None or not isinstance(message, str):
            return None
        if request_id is None and obj.get("id") is not None:
            return None
        return SubscribeError(request_id, code, message)
    subscription = _as_uint(obj.get("result"))
    if request_id is None or subscription is None:
        return None
    return SubscribeAck(request_id, subscription)


def _decode_account_diff(subscription: int, result: _JsonObject) -> RpcMessage | None:
    slot = _slot_of(result)
    account = result.get("account")
    signature = result.get("signature")
    if slot is None or not _is_optional_str(account) or not _is_optional_str(signature):
        return None
    return AccountDiffNotification(
        subscription, slot, account, signature, result.get("pre"), result.get("post")
    )


def _decode_transaction(subscription: int, result: _JsonObject) -> RpcMessage | None:
    value = _wrapped_value(result)
    if value is not None:
        # {"context": {...}, "value": {...}}: the transaction is the value.
        slot = _slot_of(result) if _has_slot(result) else _slot_of(value)
        transaction: JsonValue = value
    else:
        slot = _slot_of(result)
        transaction = result
    if slot is None:
        return None
    return TransactionNotification(subscription, slot, transaction)


def _decode_logs(subscription: int, result: _JsonObject) -> RpcMessage | None:
    slot = _slot_of(result)
    value = _as_object(result.get("value"))
    if slot is None or value is None:
        return None
    signature = value.get("signature")
    lines = _as_list(value.get("logs"))
    if not isinstance(signature, str) or lines is None:
        return None
    if not all(isinstance(line, str) for line in lines):
        return None
    return LogsNotification(
        subscription, slot, signature, value.get("err"), tuple(cast("list[str]", lines))
    )


def encode_rpc(message: RpcMessage) -> str:
    """The canonical text of a server -> client message (what the reference server sends).

    A transaction whose raw object does not carry its own ``slot`` is sent wrapped as
    ``{"context": {"slot": …}, "value": …}`` so that the slot always survives the trip.

    Raises:
        InvalidParams: a raw value cannot be written as JSON, or a transaction is not an
            object.
    """
    if isinstance(message, SubscribeAck):
        return _dumps({"jsonrpc": "2.0", "id": message.id, "result": message.subscription})
    if isinstance(message, SubscribeError):
        error: _JsonObject = {"code": message.code, "message": message.message}
        return _dumps({"jsonrpc": "2.0", "id": message.id, "error": error})
    if isinstance(message, AccountDiffNotification):
        diff: _JsonObject = {
            "context": {"slot": message.slot},
            "account": message.account,
            "signature": message.signature,
            "pre": message.pre,
            "post": message.post,
        }
        return _notification(ACCOUNT_DIFF_NOTIFICATION, message.subscription, diff)
    if isinstance(message, TransactionNotification):
        tx = _as_object(message.transaction)
        if tx is None:
            raise InvalidParams("a transaction must be a JSON object")
        if _wrapped_value(tx) is None and _slot_of(tx) == message.slot:
            payload: JsonValue = tx
        else:
            payload = {"context": {"slot": message.slot}, "value": tx}
        return _notification(TRANSACTION_NOTIFICATION, message.subscription, payload)
    if isinstance(message, LogsNotification):
        value: _JsonObject = {
            "signature": message.signature,
            "err": message.err,
            "logs": list(message.logs),
        }
        logs: _JsonObject = {"context": {"slot": message.slot}, "value": value}
        return _notification(LOGS_NOTIFICATION, message.subscription, logs)
    if isinstance(message, SubscriptionComplete):
        params: _JsonObject = {"subscription": message.subscription}
        return _dumps({"jsonrpc": "2.0", "method": SUBSCRIPTION_COMPLETE, "params": params})
    return _dumps(message.raw)


def _notification(method: str, subscription: int, result: JsonValue) -> str:
    params: _JsonObject = {"subscription": subscription, "result": result}
    return _dumps({"jsonrpc": "2.0", "method": method, "params": params})


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _dumps(value: JsonValue) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError as exc:  # orjson.JSONEncodeError: unsupported type, int beyond 64 bits
        raise InvalidParams(f"value cannot be encoded as JSON: {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value: JsonValue) -> int | None:
    return cast("int", value) if _is_int(value) else None


def _as_uint(value: JsonValue) -> int | None:
    number = _as_int(value)
    return number if number is not None and number >= 0 else None


def _as_object(value: JsonValue) -> _JsonObject | None:
    return cast("_JsonObject", value) if isinstance(value, dict) else None


def _as_list(value: JsonValue) -> list[JsonValue] | None:
    # orjson lists hold JSON values; mypy already sees list[Any], pyright needs the hint.
    return value if isinstance(value, list) else None  # pyright: ignore[reportUnknownVariableType]


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_optional_str(value: JsonValue) -> bool:
    return value is None or isinstance(value, str)


def _slot_of(result: _JsonObject) -> int | None:
    """``result.context.slot``, or ``result.slot`` when there is no context (§9.4)."""
    context = _as_object(result.get("context"))
    if context is not None and "slot" in context:
        return _as_uint(context["slot"])
    return _as_uint(result.get("slot"))


def _has_slot(result: _JsonObject) -> bool:
    context = _as_object(result.get("context"))
    return (context is not None and "slot" in context) or "slot" in result


def _wrapped_value(result: _JsonObject) -> _JsonObject | None:
    """The ``value`` of a ``{"context", "value"}`` wrapper, if ``result`` is one."""
    value = _as_object(result.get("value"))
    return value if value is not None and "transaction" not in result else None
