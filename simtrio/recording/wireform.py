"""What a recorded item looks like on disk: its session, kind and canonical wire text.

Payloads are the exact texts the codec emits (``encode_response`` with the frame's ``seqId``,
``encode_rpc``, ``encode``), so a replay can send back byte for byte what the client received.
Driver events are stored in the wire form of the response they came from, under a kind that
says so (``event.<method>``), because a replay has to number them itself.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, TypeAlias

import orjson

from simtrio import events
from simtrio.errors import InvalidParams, ProtocolError, RpcError
from simtrio.recording.format import EVENT_KIND_PREFIX
from simtrio.wire import codec, rpc, rpc_server, spellings, types

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue

DriverEvent: TypeAlias = (
    events.ReadyForContinue
    | events.Slot
    | events.Status
    | events.Paused
    | events.DiscoveryBatch
    | events.ErrorEvent
    | events.Completed
)


ControlItem: TypeAlias = types.BacktestResponse | DriverEvent
"""A control frame as decoded (with its ``seq_id`` passed separately) or a driver event."""

NotificationItem: TypeAlias = (
    rpc.AccountDiffNotification
    | rpc.TransactionNotification
    | rpc.LogsNotification
    | rpc.SubscriptionComplete
    | events.AccountDiff
    | events.Transaction
    | events.ProgramLogs
)

SentItem: TypeAlias = types.BacktestRequest | str
"""A request object, or the text written for it (re-encoded canonically)."""


def response_method(response: types.BacktestResponse) -> str:
    """The ``method`` a response is sent under."""
    if isinstance(response, types.UnknownResponse):
        return response.method
    tag = spellings.SPELLINGS[type(response)][0]
    return tag if tag is not None else type(response).__name__


def request_method(request: types.BacktestRequest | types.UnknownRequest) -> str:
    if isinstance(request, types.UnknownRequest):
        return request.method or "unknown"
    tag = spellings.SPELLINGS[type(request)][0]
    return tag if tag is not None else type(request).__name__


def _event_response(event: DriverEvent) -> types.BacktestResponse:
    match event:
        case events.ReadyForContinue():
            return types.ReadyForContinue()
        case events.Slot(slot):
            return types.SlotNotification(slot)
        case events.Status(status):
            return types.Status(status)
        case events.Paused(paused):
            return types.Paused(paused)
        case events.DiscoveryBatch(batch):
            return types.DiscoveryBatch(batch)
        case events.ErrorEvent(error):
            return types.Error(error)
        case events.Completed(summary, agent_stats):
            return types.Completed(summary, agent_stats)


def control_form(
    session_id: str | None, item: ControlItem, seq_id: int | None = None
) -> tuple[str | None, str, str]:
    """``(session_id, kind, text)`` of a control item.

    A ``sessionEventV2`` without an explicit session id is filed under its own session.

    Raises:
        InvalidParams: ``item`` is not a control item, or cannot be encoded.
    """
    if isinstance(item, DriverEvent):
        response = _event_response(item)
        kind = EVENT_KIND_PREFIX + response_method(response)
        return session_id, kind, codec.encode_response(response)
    if isinstance(item, types.SessionEventV2 | types.SessionEventV1) and session_id is None:
        session_id = item.session_id
    try:
        method = response_method(item)
    except KeyError:
        raise InvalidParams(f"not a control item: {type(item).__name__}") from None
    return session_id, method, codec.encode_response(item, seq_id)


def notification_form(item: NotificationItem) -> tuple[str, str, int | None]:
    """``(kind, text, slot)`` of a data-plane message.

    Raises:
        InvalidParams: ``item`` is not a notification, or cannot be encoded.
    """
    message: rpc.RpcMessage
    if isinstance(item, events.AccountDiff | events.Transaction):
        message = item.notification
    elif isinstance(item, events.ProgramLogs):
        # The event has no subscription id; replays number subscriptions themselves.
        message = rpc.LogsNotification(0, item.slot, item.signature, item.err, item.logs)
    else:
        message = item
    if isinstance(message, rpc.AccountDiffNotification):
        kind, slot = rpc.ACCOUNT_DIFF_NOTIFICATION, message.slot
    elif isinstance(message, rpc.TransactionNotification):
        kind, slot = rpc.TRANSACTION_NOTIFICATION, message.slot
    elif isinstance(message, rpc.LogsNotification):
        kind, slot = rpc.LOGS_NOTIFICATION, message.slot
    elif isinstance(message, rpc.SubscriptionComplete):  # pyright: ignore[reportUnnecessaryIsInstance]
        kind, slot = rpc.SUBSCRIPTION_COMPLETE, None
    else:
        raise InvalidParams(f"not a notification: {type(item).__name__}")
    return kind, rpc_server.encode_rpc(message), slot


def sent_form(session_id: str | None, request: SentItem) -> tuple[str | None, str, str]:
    """``(session_id, kind, text)`` of a request the client wrote.

    Requests routed to a sub-session are filed under it when no session id is given.

    Raises:
        InvalidParams: ``request`` is not a request (or request text), or cannot be encoded.
    """
    if isinstance(request, str):
        try:
            decoded = codec.decode_request(request)
        except ProtocolError:
            raise InvalidParams("recorded request text is not a JSON object") from None
        if isinstance(decoded, types.UnknownRequest):
            raise InvalidParams(f"recorded request text is not a request: {decoded.reason}")
        request = decoded
    if session_id is None and isinstance(
        request,
        types.ContinueSessionRequestV1
        | types.ContinueToSessionRequestV1
        | types.CloseSessionRequestV1,
    ):
        session_id = request.session_id
    try:
        method = request_method(request)
    except KeyError:
        raise InvalidParams(f"not a request: {type(request).__name__}") from None
    return session_id, method, codec.encode(request)


def rpc_form(
    method: str, params: JsonValue, result: JsonValue, error: RpcError | None
) -> tuple[str, str]:
    """``(kind, text)`` of one answered JSON-RPC call: the method, and the request's params
    with the result (or the error object) it got, as one canonical JSON object.

    Raises:
        InvalidParams: a value cannot be written as JSON.
    """
    record: dict[str, JsonValue] = {"method": method, "params": params}
    if error is None:
        record["result"] = result
    else:
        record["error"] = {"code": error.code, "message": error.message, "data": error.data}
    try:
        return method, orjson.dumps(record).decode("utf-8")
    except TypeError as exc:
        raise InvalidParams(f"rpc call cannot be recorded: {exc}") from None
