"""Data-plane JSON-RPC messages (protocol §9): subscribe requests, acks, notifications, terminals.

The client side decodes tolerantly (:func:`decode_rpc`) and encodes exactly
(:meth:`Subscribe.encode`); the reference server uses the mirror image, in
:mod:`simtrio.wire.rpc_server`, so both ends share one set of spellings.
Raw payloads (``pre``, ``post``, transactions) are kept as parsed JSON and never reshaped.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import attrs
import orjson

from simtrio.errors import InvalidParams, ProtocolError
from simtrio.wire.construct import plain_constructor
from simtrio.wire.jsontext import (
    JsonObject,
    JsonValue,
    as_int,
    as_list,
    as_object,
    as_uint,
    dumps,
    is_int,
)
from simtrio.wire.rules import I64_MAX, I64_MIN

if TYPE_CHECKING:
    from collections.abc import Callable

# Method names of the data plane, spelled once.
ACCOUNT_DIFF_SUBSCRIBE: Final = "accountDiffSubscribe"
"""Subscribes to the diffs of the accounts a program owns, one request per program id
(protocol §9.2)."""
TRANSACTION_SUBSCRIBE: Final = "transactionSubscribe"
"""Subscribes to the transactions that involve a program, one request per program id
(protocol §9.2)."""
ACCOUNT_DIFF_UNSUBSCRIBE: Final = "accountDiffUnsubscribe"
"""Ends one account-diff subscription; the server answers ``true``. simtrio's clients close the
connection instead (protocol §9.10)."""
TRANSACTION_UNSUBSCRIBE: Final = "transactionUnsubscribe"
"""Ends one transaction subscription; the server answers ``true``. simtrio's clients close the
connection instead (protocol §9.10)."""
ACCOUNT_DIFF_NOTIFICATION: Final = "accountDiffNotification"
"""The server's message with one account diff, decoded to ``AccountDiffNotification``
(protocol §9.4)."""
TRANSACTION_NOTIFICATION: Final = "transactionNotification"
"""The server's message with one transaction, decoded to ``TransactionNotification``
(protocol §9.4)."""
SUBSCRIPTION_COMPLETE: Final = "subscriptionComplete"
"""The terminal marker after a subscription's last notification: nothing more will come for it
(protocol §9.5)."""
LOGS_SUBSCRIBE: Final = "logsSubscribe"
"""Standard Solana pubsub: subscribes to the log lines of transactions mentioning a program."""
LOGS_UNSUBSCRIBE: Final = "logsUnsubscribe"
"""Ends one logs subscription; the server answers ``true``."""
LOGS_NOTIFICATION: Final = "logsNotification"
"""The server's message with one transaction's log lines, decoded to ``LogsNotification``."""

METHOD_NOT_FOUND: Final = -32601
"""JSON-RPC error code: the data plane does not serve the method. Terminal for a subscribe, which
fails at once with ``SubscriptionFailed`` (protocol §9.3)."""
INVALID_PARAMS: Final = -32602
"""JSON-RPC error code: the request could not be read (not JSON, no integer id, a bad program id
or replay slot). Terminal for a subscribe, which fails at once with ``SubscriptionFailed``
(protocol §9.3)."""

SUBSCRIBE_METHODS: Final = frozenset({ACCOUNT_DIFF_SUBSCRIBE, TRANSACTION_SUBSCRIBE})
UNSUBSCRIBE_METHODS: Final = frozenset({ACCOUNT_DIFF_UNSUBSCRIBE, TRANSACTION_UNSUBSCRIBE})
CLIENT_SUBSCRIBE_METHODS: Final = SUBSCRIBE_METHODS | {LOGS_SUBSCRIBE}
"""What a client may send: the simulator's kinds, and standard Solana ``logsSubscribe``."""
COMPRESSION_ZSTD: Final = "zstd"
REPLAY_KEYS: Final = ("replayFromSlot", "replay_from_slot")
"""Where a subscribe's config holds its replay slot: the canonical key, then the tolerated one."""


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
        if self.method not in CLIENT_SUBSCRIBE_METHODS:
            raise InvalidParams(f"not a subscribe method: {self.method!r}")
        if not is_int(self.id):
            raise InvalidParams("subscribe id must be an int")
        if not _is_str(self.program_id):
            raise InvalidParams("program id must be a str")
        replay = self.replay_from_slot
        if replay is not None and not (is_int(replay) and I64_MIN <= replay <= I64_MAX):
            raise InvalidParams("replay_from_slot must be a signed 64-bit int or None")

    def encode(self) -> str:
        """The exact canonical text (compact, fixed key order)."""
        config: JsonObject = {}
        target: JsonValue = self.program_id
        if self.method == LOGS_SUBSCRIBE:
            target = {"mentions": [self.program_id]}
            config["commitment"] = "confirmed"
        if self.compression:
            config["compression"] = COMPRESSION_ZSTD
        if self.replay_from_slot is not None:
            config["replayFromSlot"] = self.replay_from_slot
        return dumps(
            {
                "jsonrpc": "2.0",
                "id": self.id,
                "method": self.method,
                "params": [target, config],
            }
        )


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

    raw: JsonObject


RpcMessage: TypeAlias = (
    SubscribeAck
    | SubscribeError
    | AccountDiffNotification
    | TransactionNotification
    | LogsNotification
    | SubscriptionComplete
    | UnknownRpcMessage
)
"""Any data-plane message a client receives, as ``decode_rpc`` returns it (protocol §9.3-§9.5):
an ack or error reply to a subscribe, a notification, a terminal marker, or ``UnknownRpcMessage``.
"""


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
    obj = as_object(parsed)
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


def _decode_object(obj: JsonObject) -> RpcMessage | None:
    method = obj.get("method")
    if method is not None:
        params = as_object(obj.get("params"))
        if not isinstance(method, str) or params is None:
            return None
        subscription = as_uint(params.get("subscription"))
        if subscription is None:
            return None
        if method == SUBSCRIPTION_COMPLETE:
            return SubscriptionComplete(subscription)
        result = as_object(params.get("result"))
        if result is None:
            return None
        if method == ACCOUNT_DIFF_NOTIFICATION:
            return _decode_account_diff(subscription, result)
        if method == TRANSACTION_NOTIFICATION:
            return _decode_transaction(subscription, result)
        if method == LOGS_NOTIFICATION:
            return _decode_logs(subscription, result)
        return None

    request_id = as_int(obj.get("id"))
    if "error" in obj:
        error = as_object(obj["error"])
        if error is None:
            return None
        code = as_int(error.get("code"))
        message = error.get("message", "")
        if code is None or not isinstance(message, str):
            return None
        if request_id is None and obj.get("id") is not None:
            return None
        return SubscribeError(request_id, code, message)
    subscription = as_uint(obj.get("result"))
    if request_id is None or subscription is None:
        return None
    return SubscribeAck(request_id, subscription)


def _decode_account_diff(subscription: int, result: JsonObject) -> RpcMessage | None:
    slot = slot_of(result)
    account = result.get("account")
    signature = result.get("signature")
    if slot is None or not _is_optional_str(account) or not _is_optional_str(signature):
        return None
    return AccountDiffNotification(
        subscription, slot, account, signature, result.get("pre"), result.get("post")
    )


def _decode_transaction(subscription: int, result: JsonObject) -> RpcMessage | None:
    value = wrapped_value(result)
    if value is not None:
        # {"context": {...}, "value": {...}}: the transaction is the value.
        slot = slot_of(result) if has_slot(result) else slot_of(value)
        transaction: JsonValue = value
    else:
        slot = slot_of(result)
        transaction = result
    if slot is None:
        return None
    return TransactionNotification(subscription, slot, transaction)


def _decode_logs(subscription: int, result: JsonObject) -> RpcMessage | None:
    slot = slot_of(result)
    value = as_object(result.get("value"))
    if slot is None or value is None:
        return None
    signature = value.get("signature")
    lines = as_list(value.get("logs"))
    if not isinstance(signature, str) or lines is None:
        return None
    if not all(isinstance(line, str) for line in lines):
        return None
    return LogsNotification(
        subscription, slot, signature, value.get("err"), tuple(cast("list[str]", lines))
    )


# --------------------------------------------------------------------------------------------
# Readers shared with the server side
# --------------------------------------------------------------------------------------------


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_optional_str(value: JsonValue) -> bool:
    return value is None or isinstance(value, str)


def slot_of(result: JsonObject) -> int | None:
    """``result.context.slot``, or ``result.slot`` when there is no context (§9.4)."""
    context = as_object(result.get("context"))
    if context is not None and "slot" in context:
        return as_uint(context["slot"])
    return as_uint(result.get("slot"))


def has_slot(result: JsonObject) -> bool:
    context = as_object(result.get("context"))
    return (context is not None and "slot" in context) or "slot" in result


def wrapped_value(result: JsonObject) -> JsonObject | None:
    """The ``value`` of a ``{"context", "value"}`` wrapper, if ``result`` is one."""
    value = as_object(result.get("value"))
    return value if value is not None and "transaction" not in result else None
