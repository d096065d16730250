"""The reference server's side of the data-plane JSON-RPC (protocol §9): the mirror image of
:mod:`simtrio.wire.rpc`.

:func:`decode_rpc_request` reads what a client sends (tolerantly, never raising) and
:func:`encode_rpc` writes the canonical text of every server -> client message, from the same
spellings the client decodes with.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TypeAlias

import attrs
import orjson

from simtrio.errors import InvalidParams, excerpt
from simtrio.wire import rpc
from simtrio.wire.jsontext import JsonObject, JsonValue, as_int, as_list, as_object, as_uint, dumps
from simtrio.wire.rpc import RpcMessage, Subscribe, SubscribeError
from simtrio.wire.rules import I64_MAX, I64_MIN


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
        return rpc.METHOD_NOT_FOUND

    def error_reply(self) -> SubscribeError:
        """The JSON-RPC error the server sends back."""
        return SubscribeError(
            self.id, rpc.METHOD_NOT_FOUND, f"method not found: {excerpt(self.method)}"
        )


@attrs.frozen
class InvalidRpcRequest:
    """A request that could not be read (JSON-RPC -32602); ``id`` is None when unknown."""

    id: int | None
    reason: str

    @property
    def code(self) -> int:
        return rpc.INVALID_PARAMS

    def error_reply(self) -> SubscribeError:
        """The JSON-RPC error the server sends back."""
        return SubscribeError(self.id, rpc.INVALID_PARAMS, f"invalid params: {self.reason}")


RpcRequest: TypeAlias = Subscribe | Unsubscribe | UnknownRpcRequest | InvalidRpcRequest
"""Any data-plane request as the reference server reads it with ``decode_rpc_request``: a
subscribe, an unsubscribe, or one it answers with a JSON-RPC error (-32601 or -32602).
"""


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
    obj = as_object(parsed)
    if obj is None:
        return InvalidRpcRequest(None, "request is not a JSON object")
    method = obj.get("method")
    if not isinstance(method, str):
        return InvalidRpcRequest(as_int(obj.get("id")), "missing method")
    request_id = as_int(obj.get("id"))
    if request_id is None:
        return InvalidRpcRequest(None, "missing or non-integer id")
    if method in rpc.SUBSCRIBE_METHODS:
        return _decode_subscribe(obj, method, request_id)
    if method == rpc.LOGS_SUBSCRIBE:
        return _decode_logs_subscribe(obj, request_id)
    if method in rpc.UNSUBSCRIBE_METHODS or method == rpc.LOGS_UNSUBSCRIBE:
        params = as_list(obj.get("params"))
        subscription = as_uint(params[0]) if params else None
        if subscription is None:
            return InvalidRpcRequest(request_id, "expected [subscription id]")
        return Unsubscribe(method, request_id, subscription)
    return UnknownRpcRequest(request_id, method)


decode_subscribe_request = decode_rpc_request
"""Alias of :func:`decode_rpc_request`, named after its main use."""


def _decode_subscribe(obj: JsonObject, method: str, request_id: int) -> RpcRequest:
    params = as_list(obj.get("params"))
    if not params:
        return InvalidRpcRequest(request_id, "expected [program id, config]")
    program_id = params[0]
    if not isinstance(program_id, str):
        return InvalidRpcRequest(request_id, "program id must be a string")
    config = as_object(params[1]) if len(params) > 1 else None
    if config is None:
        return Subscribe(method, request_id, program_id, None, compression=False)
    replay: int | None = None
    for key in rpc.REPLAY_KEYS:
        if key in config and config[key] is not None:
            value = as_int(config[key])
            if value is None or not I64_MIN <= value <= I64_MAX:
                return InvalidRpcRequest(request_id, f"{key} must be a slot number")
            replay = value
            break
    compression = config.get("compression") == rpc.COMPRESSION_ZSTD
    return Subscribe(method, request_id, program_id, replay, compression=compression)


def _decode_logs_subscribe(obj: JsonObject, request_id: int) -> RpcRequest:
    """``logsSubscribe``: the filter must mention exactly one program, as simtrio sends it."""
    params = as_list(obj.get("params")) or []
    target = as_object(params[0]) if params else None
    mentions = as_list(target.get("mentions")) if target is not None else None
    if mentions is None or len(mentions) != 1 or not isinstance(mentions[0], str):
        return InvalidRpcRequest(request_id, 'expected [{"mentions": [one program id]}, config]')
    program_id: str = mentions[0]
    rewritten: JsonObject = {"params": [program_id, *params[1:]]}
    return _decode_subscribe(rewritten, rpc.LOGS_SUBSCRIBE, request_id)


def encode_unsubscribe_reply(request_id: int | None, result: bool = True) -> str:
    """The server's reply to an :class:`Unsubscribe`."""
    return dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def encode_rpc(message: RpcMessage) -> str:
    """The canonical text of a server -> client message (what the reference server sends).

    A transaction whose raw object does not carry its own ``slot`` is sent wrapped as
    ``{"context": {"slot": …}, "value": …}`` so that the slot always survives the trip.

    Raises:
        InvalidParams: a raw value cannot be written as JSON, or a transaction is not an
            object.
    """
    if isinstance(message, rpc.SubscribeAck):
        return dumps({"jsonrpc": "2.0", "id": message.id, "result": message.subscription})
    if isinstance(message, SubscribeError):
        error: JsonObject = {"code": message.code, "message": message.message}
        return dumps({"jsonrpc": "2.0", "id": message.id, "error": error})
    if isinstance(message, rpc.AccountDiffNotification):
        diff: JsonObject = {
            "context": {"slot": message.slot},
            "account": message.account,
            "signature": message.signature,
            "pre": message.pre,
            "post": message.post,
        }
        return _notification(rpc.ACCOUNT_DIFF_NOTIFICATION, message.subscription, diff)
    if isinstance(message, rpc.TransactionNotification):
        tx = as_object(message.transaction)
        if tx is None:
            raise InvalidParams("a transaction must be a JSON object")
        if rpc.wrapped_value(tx) is None and rpc.slot_of(tx) == message.slot:
            payload: JsonValue = tx
        else:
            payload = {"context": {"slot": message.slot}, "value": tx}
        return _notification(rpc.TRANSACTION_NOTIFICATION, message.subscription, payload)
    if isinstance(message, rpc.LogsNotification):
        value: JsonObject = {
            "signature": message.signature,
            "err": message.err,
            "logs": list(message.logs),
        }
        logs: JsonObject = {"context": {"slot": message.slot}, "value": value}
        return _notification(rpc.LOGS_NOTIFICATION, message.subscription, logs)
    if isinstance(message, rpc.SubscriptionComplete):
        params: JsonObject = {"subscription": message.subscription}
        return dumps({"jsonrpc": "2.0", "method": rpc.SUBSCRIPTION_COMPLETE, "params": params})
    return dumps(message.raw)


def _notification(method: str, subscription: int, result: JsonValue) -> str:
    params: JsonObject = {"subscription": subscription, "result": result}
    return dumps({"jsonrpc": "2.0", "method": method, "params": params})
