"""Control-plane JSON codec (protocol §2 to §5), shared by the clients and the reference server.

Encoding is canonical: one exact text per message (§2.5). Decoding is tolerant in precisely the
documented ways (both field spellings, kind matching, alternate tagging forms) and strict about
JSON types: nothing is ever coerced, so ``"4001"`` is not a slot and ``true`` is not an integer.
The only exception that leaves a decoder is :class:`~simtrio.errors.ProtocolError`; a frame that
is well-formed JSON but does not fit its method becomes an ``UnknownResponse`` instead.

This module holds the entry points and the hand-written hot paths (slot notifications, status,
numbered sub-session events). Spellings live in :mod:`simtrio.wire.spellings`, the generated
readers and writers in :mod:`simtrio.wire.converter`, server errors in
:mod:`simtrio.wire.error_codec`.
"""

from __future__ import annotations

__all__: list[str] = []

import functools
import logging
from typing import TYPE_CHECKING, Any, Final, TypeAlias, get_args

import attrs
import orjson

from simtrio.errors import InvalidParams, ProtocolError
from simtrio.wire.construct import plain_constructor
from simtrio.wire.converter import (
    MISSING,
    STATUS_BY_TEXT,
    Mismatch,
    UHook,
    conv,
    type_error,
    u_u64,
)
from simtrio.wire.error_codec import decode_backtest_error
from simtrio.wire.jsontext import (
    JsonValue,
    dumps_wide,
    exact_params,
    excerpt_source,
    loads_object,
)
from simtrio.wire.rules import U64_MAX, kind_key
from simtrio.wire.spellings import (
    METHOD_KEY,
    PARAMS_KEY,
    SEQ_ID_ALT,
    SEQ_ID_KEY,
    SPELLINGS,
    decode_keys,
    key,
    resolved_fields,
)
from simtrio.wire.types import (
    AvailableRange,
    BacktestRequest,
    BacktestResponse,
    BacktestStatus,
    Completed,
    ContinueParams,
    ContinueSessionRequestV1,
    DiscoveryBatch,
    DiscoveryBatchEvent,
    Error,
    Paused,
    PausedEvent,
    ReadyForContinue,
    SessionEvent,
    SessionEventV2,
    SlotNotification,
    Status,
    Success,
    TopLevelEvent,
    UnknownRequest,
    UnknownResponse,
    UnknownSessionEvent,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

logger = logging.getLogger(__name__)


# ============================================================================================
# Session events (§4.1)
# ============================================================================================

_PayloadDecoder: TypeAlias = UHook


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
    if type(payload) is int and 0 <= payload <= U64_MAX:
        return _new_slot_notification(payload)
    raise Mismatch(f"expected an unsigned integer slot, got {type(payload).__name__}")


_s_paused_event: Final = conv.get_structure_hook(PausedEvent)
_s_discovery_event: Final = conv.get_structure_hook(DiscoveryBatchEvent)
_s_completed: Final = conv.get_structure_hook(Completed)


def _d_status(payload: Any) -> Status:
    """Hot path: a hand-written reader for ``{"status": …}``."""
    obj: dict[str, Any] = payload
    if type(obj) is dict:
        value = obj.get(_STATUS_KEY)
        if type(value) is str:
            return Status(_known_status(value) or BacktestStatus(value))
    raise Mismatch("status: expected an object with a status string")


_STATUS_KEY: Final = key(Status, "status")
_known_status: Final = STATUS_BY_TEXT.get

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
_EVENT_CLASSES: Final[frozenset[type]] = frozenset(get_args(TopLevelEvent))


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
    except Mismatch:
        return UnknownSessionEvent(raw)
    return event


def _encode_event(event: Any) -> JsonValue:
    if isinstance(event, UnknownSessionEvent):
        return event.raw
    if type(event) not in _EVENT_CLASSES:
        raise type_error("a session event", event)
    message = _encode_message(event)
    if isinstance(event, Completed) and event.agent_stats is None:
        # §4.1: an event writes agent_stats only when it has some.
        del message[PARAMS_KEY][key(Completed, "agent_stats")]
    return message


def _structure_event(value: Any, _: Any) -> SessionEvent:
    return _decode_event(value)


conv.register_structure_hook_func(lambda tp: tp == SessionEvent, _structure_event)
conv.register_unstructure_hook_func(lambda tp: tp == SessionEvent, _encode_event)


# ============================================================================================
# Responses (§4)
# ============================================================================================


_EV2_SESSION_ID, _EV2_SESSION_ID_ALT = decode_keys(SessionEventV2, "session_id")[1]
_EV2_SEQ_ID, _EV2_SEQ_ID_ALT = decode_keys(SessionEventV2, "seq_id")[1]
(_EV2_EVENT,) = decode_keys(SessionEventV2, "event")[1]


def _d_session_event_v2(params: Any) -> SessionEventV2:
    """Hot path: hand-written to stay lean; same tolerance as the generic readers.

    The commonest event, an adjacent-tagged slot notification, is read inline; anything else
    goes through :func:`_decode_event`.
    """
    obj: dict[str, Any] = params
    if type(obj) is not dict:
        raise Mismatch("expected an object")
    session_id = obj.get(_EV2_SESSION_ID, MISSING)
    if session_id is MISSING:
        session_id = obj.get(_EV2_SESSION_ID_ALT, MISSING)
    if type(session_id) is not str:
        raise Mismatch("session_id: expected a string")
    seq_id = obj.get(_EV2_SEQ_ID, MISSING)
    if seq_id is MISSING:
        seq_id = obj.get(_EV2_SEQ_ID_ALT, MISSING)
    if type(seq_id) is not int or not 0 <= seq_id <= U64_MAX:
        raise Mismatch("seq_id: expected an unsigned integer")
    event = obj.get(_EV2_EVENT, MISSING)
    if event is MISSING:
        raise Mismatch("missing event")
    inner: dict[str, Any] = event
    if type(inner) is dict and inner.get(METHOD_KEY) == _SLOT_TAG:
        slot = inner.get(PARAMS_KEY)
        if type(slot) is int and 0 <= slot <= U64_MAX:
            return _new_session_event_v2(session_id, seq_id, _new_slot_notification(slot))
    return _new_session_event_v2(session_id, seq_id, _decode_event(event))


def _struct_decoder(cls: type) -> _PayloadDecoder:
    hook = conv.get_structure_hook(cls)

    def decode(payload: Any) -> Any:
        return hook(payload, cls)

    return decode


_RESPONSE_CLASSES: Final[frozenset[type]] = frozenset(get_args(BacktestResponse)) - {
    UnknownResponse
}

_RESPONSE_DECODERS: Final[Mapping[str, _PayloadDecoder]] = {
    **{
        tag: _struct_decoder(cls)
        for cls in _RESPONSE_CLASSES - _EVENT_CLASSES
        if (tag := SPELLINGS[cls][0]) is not None
    },
    **_EVENT_DECODERS,
    # The numbered sub-session event is the hot path of a parallel run: hand-read.
    "sessionEventV2": _d_session_event_v2,
}


def _newtype_value_hook(cls: type) -> UHook:
    (field,) = resolved_fields(cls)
    return conv.get_unstructure_hook(field.type)


_NEWTYPE_WRITERS: Final[Mapping[type, tuple[str, UHook]]] = {
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
        return {METHOD_KEY: tag, PARAMS_KEY: conv.unstructure(message)}
    except InvalidParams as exc:
        raise InvalidParams(f"{tag}: {exc}") from None


def _encode_unknown(method: object, params: JsonValue) -> dict[str, Any]:
    if not isinstance(method, str):
        raise type_error("a method string", method)
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
        raise ProtocolError("not valid JSON", data=excerpt_source(text)) from None
    if type(obj) is not dict:
        raise ProtocolError("not a JSON object", data=excerpt_source(text))
    method = obj.get(METHOD_KEY)
    if type(method) is not str:
        raise ProtocolError("frame has no string 'method'", data=excerpt_source(text))
    seq_id = obj.get(SEQ_ID_KEY, MISSING)
    if seq_id is MISSING:
        seq_id = obj.get(SEQ_ID_ALT)
    if seq_id is not None and (type(seq_id) is not int or not 0 <= seq_id <= U64_MAX):
        raise ProtocolError("frame has an invalid 'seqId'", data=excerpt_source(text))
    params = obj.get(PARAMS_KEY)
    decoder = _RESPONSE_DECODERS.get(method)
    if decoder is None:
        return seq_id, UnknownResponse(method, exact_params(text, params, PARAMS_KEY))
    try:
        response: BacktestResponse = decoder(params)
    except Mismatch as exc:
        logger.warning("%s frame does not fit its method (%s); kept as unknown", method, exc)
        return seq_id, UnknownResponse(method, exact_params(text, params, PARAMS_KEY))
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
        raise type_error("a BacktestResponse", response)
    if seq_id is not None:
        message = {SEQ_ID_KEY: u_u64(seq_id, None), **message}
    return dumps_wide(message)


# ============================================================================================
# Requests (§3)
# ============================================================================================

_REQUEST_CLASSES: Final[tuple[type, ...]] = get_args(BacktestRequest)


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
        return dumps_wide(_encode_unknown(request.method, request.params))
    if type(request) not in _REQUEST_CLASSES:
        raise type_error("a BacktestRequest", request)
    return dumps_wide(_encode_message(request))


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
    return head + dumps_wide(session_id) + tail


_SESSION_MARK: Final = "\x00session\x00"


@functools.lru_cache(maxsize=32)
def _plain_continue_parts(advance_count: int) -> tuple[str, str]:
    text = encode(ContinueSessionRequestV1(_SESSION_MARK, ContinueParams(advance_count)))
    head, mark, tail = text.partition(dumps_wide(_SESSION_MARK))
    assert mark, "the session id is written as the JSON string of itself"
    return head, tail


def decode_request(text: str | bytes) -> BacktestRequest | UnknownRequest:
    """Server side: read a request in any tolerated form (§2.2, §3).

    Unknown methods, a missing method and params that do not fit come back as
    ``UnknownRequest`` with a reason, so the server can answer ``InvalidRequest``.

    Raises:
        ProtocolError: the text is not a JSON object.
    """
    obj = loads_object(text)
    method = obj.get(METHOD_KEY)
    params = obj.get(PARAMS_KEY)
    if type(method) is not str:
        return UnknownRequest(None, params, "missing or non-string method")
    decoder = _REQUEST_DECODERS.get(method)
    if decoder is None:
        return UnknownRequest(method, params, f"unknown method {method[:60]!r}")
    try:
        request: BacktestRequest = decoder(params)
    except Mismatch as exc:
        return UnknownRequest(method, params, f"params do not fit {method}: {exc}")
    return request


# ============================================================================================
# Available ranges (§1.5)
# ============================================================================================

_s_available_range: Final = conv.get_structure_hook(AvailableRange)
_u_available_range: Final = conv.get_unstructure_hook(AvailableRange)


def decode_available_ranges(body: bytes | str) -> list[AvailableRange]:
    """Read the ``/available-ranges`` body; entries that do not fit are skipped with a warning.

    Raises:
        ProtocolError: the body is not a JSON array.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProtocolError("available ranges: not valid JSON", data=excerpt_source(body)) from None
    entries: list[Any] = value
    if type(entries) is not list:
        raise ProtocolError("available ranges: not a JSON array", data=excerpt_source(body))
    ranges: list[AvailableRange] = []
    reasons: list[str] = []
    for entry in entries:
        try:
            ranges.append(_s_available_range(entry, AvailableRange))
        except Mismatch as exc:
            reasons.append(str(exc))
    if reasons:
        logger.warning(
            "skipped %d unreadable available-range entries (first: %s)", len(reasons), reasons[0]
        )
    return ranges


def encode_available_ranges(ranges: Iterable[AvailableRange]) -> str:
    """The canonical camelCase array (§1.5), as the reference server serves it."""
    return dumps_wide([_u_available_range(r) for r in ranges])


def _build_hooks() -> None:
    """Build every hook now, so the first frame does not pay for it."""
    for cls, (_tag, fields) in SPELLINGS.items():
        if fields:
            conv.get_structure_hook(cls)
            conv.get_unstructure_hook(cls)


_build_hooks()
