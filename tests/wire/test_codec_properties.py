"""Round trips for every message variant, and decoders that fail only with ProtocolError."""

from __future__ import annotations

from typing import Any, get_args

import attrs
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from simtrio import wire as t
from simtrio.errors import InvalidParams, ProtocolError
from simtrio.wire.base58 import b58encode
from simtrio.wire.codec import (
    decode_available_ranges,
    decode_frame,
    decode_request,
    decode_response,
    encode,
    encode_plain_continue,
    encode_response,
)
from simtrio.wire.error_codec import (
    decode_backtest_error,
    encode_backtest_error,
)
from simtrio.wire.rules import kind_key
from simtrio.wire.spellings import SPELLINGS

FAST = settings(max_examples=150, deadline=None)

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=12)
address = st.binary(min_size=32, max_size=32).map(b58encode)

json_scalar = (
    st.none() | st.booleans() | i64 | u64 | st.floats(allow_nan=False, allow_infinity=False) | text
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
json_object = st.dictionaries(text, json_value, max_size=4)

# --------------------------------------------------------------------------------------------
# Value strategies
# --------------------------------------------------------------------------------------------

KNOWN_ERROR_CLASSES = [
    cls for cls in SPELLINGS if isinstance(cls, type) and issubclass(cls, t.BacktestError)
]
KNOWN_ERROR_KEYS = {kind_key(cls.KIND) for cls in KNOWN_ERROR_CLASSES}
EVENT_TAG_KEYS = {
    kind_key(tag)
    for tag in (
        "readyForContinue",
        "slotNotification",
        "paused",
        "discoveryBatch",
        "error",
        "success",
        "completed",
        "status",
    )
}
MESSAGE_CLASSES = [
    c for c in (*get_args(t.BacktestRequest), *get_args(t.BacktestResponse)) if c in SPELLINGS
]
KNOWN_METHODS = {tag for c in MESSAGE_CLASSES if (tag := SPELLINGS[c][0]) is not None}
TERMINAL_KINDS = {"SessionNotFound", "SessionOwnerMismatch", "SessionOwnershipBusy", "Internal"}
KNOWN_STATUS_KEYS = {kind_key(s.value) for s in t.BacktestStatus}


def _error_strategy(cls: type[t.BacktestError]) -> st.SearchStrategy[t.BacktestError]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in attrs.fields(cls):
        if field.name == "raw":
            continue
        fields[field.name] = u64 if field.type in ("int", int) else text
    return st.builds(cls, **fields)


unknown_tag = text.filter(lambda s: kind_key(s) not in KNOWN_ERROR_KEYS)
unknown_error = st.one_of(
    unknown_tag.map(lambda tag: t.UnknownBacktestError(tag=tag)),
    st.tuples(
        unknown_tag.filter(lambda s: s not in ("kind", "type", "code", "method")), json_value
    ).map(lambda kv: t.UnknownBacktestError(tag=kv[0], raw={kv[0]: kv[1]})),
)
backtest_error = st.one_of([_error_strategy(c) for c in KNOWN_ERROR_CLASSES] + [unknown_error])

program_executed = text.map(t.ProgramExecuted)
unknown_filter = json_value.filter(
    lambda v: (
        not (
            isinstance(v, dict)
            and len(v) == 1
            and kind_key(next(iter(v))) == "programexecuted"
            and isinstance(next(iter(v.values())), str)
        )
    )
).map(t.UnknownDiscoveryFilter)
discovery_filter = program_executed | unknown_filter

encoded_binary = st.builds(t.EncodedBinary, data=text, encoding=text)


def _counters(cls: type[Any], **special: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``cls`` with every ``int`` field drawn as a u64 and the ``special`` fields as given."""
    counters = {f.name: u64 for f in attrs.fields(cls) if f.type in (int, "int")}
    return st.builds(cls, **{**counters, **special})


summary = _counters(t.SessionSummary)
agent_stats = _counters(
    t.AgentStatsReport,
    name=text,
    expected_gain_by_mint=st.dictionaries(address | text, i64, max_size=3),
)
status = st.one_of(
    st.sampled_from(list(t.BacktestStatus)),
    text.filter(lambda s: kind_key(s) not in KNOWN_STATUS_KEYS).map(t.BacktestStatus),
)
paused_event = st.builds(t.PausedEvent, slot=u64, batch_index=st.none() | u32)
discovery_event = st.builds(
    t.DiscoveryBatchEvent,
    slot=u64,
    batch_index=st.none() | u32,
    matched=st.lists(discovery_filter, max_size=3),
    transactions=st.lists(encoded_binary, max_size=3),
)
completed = st.builds(
    t.Completed,
    summary=st.none() | summary,
    agent_stats=st.none() | st.lists(agent_stats, max_size=2),
)
unknown_event_raw = st.one_of(
    st.none(),
    st.booleans(),
    i64,
    st.lists(json_value, max_size=3),
    st.builds(
        lambda tag, params: {"method": tag, "params": params},
        text.filter(lambda s: kind_key(s) not in EVENT_TAG_KEYS),
        json_value,
    ),
)
session_event = st.one_of(
    st.just(t.ReadyForContinue()),
    st.just(t.Success()),
    u64.map(t.SlotNotification),
    paused_event.map(t.Paused),
    discovery_event.map(t.DiscoveryBatch),
    backtest_error.map(t.Error),
    completed,
    status.map(t.Status),
    unknown_event_raw.map(t.UnknownSessionEvent),
)
optional_text = st.none() | text
response = st.one_of(
    st.builds(t.SessionCreated, session_id=text, rpc_endpoint=text, task_id=optional_text),
    st.builds(t.SessionAttached, session_id=text, rpc_endpoint=text, task_id=optional_text),
    st.builds(t.SessionsCreated, session_ids=st.lists(text, max_size=3)),
    st.builds(
        t.SessionsCreatedV2,
        control_session_id=text,
        session_ids=st.lists(text, max_size=3),
        task_ids=st.lists(optional_text, max_size=3),
        start_slots=st.lists(u64, max_size=3),
        end_slots=st.lists(u64, max_size=3),
    ),
    st.builds(
        t.ParallelSessionAttachedV2,
        control_session_id=text,
        session_ids=st.lists(text, max_size=3),
        task_ids=st.lists(optional_text, max_size=3),
    ),
    session_event.filter(lambda e: not isinstance(e, t.UnknownSessionEvent)),
    st.builds(t.SessionEventV1, session_id=text, event=session_event),
    st.builds(t.SessionEventV2, session_id=text, seq_id=u64, event=session_event),
    st.builds(
        t.UnknownResponse,
        method=text.filter(lambda m: m not in KNOWN_METHODS),
        params=json_value,
    ),
)

account = st.builds(
    t.AccountData,
    data=encoded_binary,
    executable=st.booleans(),
    lamports=u64,
    owner=text,
    space=u64,
)
continue_params = st.builds(
    t.ContinueParams,
    advance_count=u64,
    transactions=st.lists(text, max_size=3),
    modify_account_states=st.dictionaries(address, account, max_size=3),
)
continue_to = st.builds(t.ContinueToParams, slot=u64, batch_index=st.none() | u32)
request = st.one_of(
    st.builds(
        t.CreateBacktestSessionRequest,
        start_slot=u64,
        end_slot=u64,
        signer_filter=st.lists(address, max_size=3).map(
            lambda xs: sorted(set(xs), key=lambda a: int.from_bytes(_b58(a), "big"))
        ),
        send_summary=st.booleans(),
        capacity_wait_timeout_secs=st.none() | u16,
        disconnect_timeout_secs=st.none() | u16,
        extra_compute_units=st.none() | u32,
        agents=st.lists(json_object, max_size=2),
        discoveries=st.lists(discovery_filter, max_size=2),
        parallel=st.booleans(),
    ),
    continue_params,
    continue_to,
    st.builds(t.ContinueSessionRequestV1, session_id=text, request=continue_params),
    st.builds(t.ContinueToSessionRequestV1, session_id=text, request=continue_to),
    st.just(t.CloseBacktestSession()),
    st.builds(t.CloseSessionRequestV1, session_id=text),
    st.builds(t.AttachBacktestSession, session_id=text, last_sequence=st.none() | u64),
    st.just(t.ResumeAttachedSession()),
    st.builds(
        t.AttachParallelControlSessionV2,
        control_session_id=text,
        last_sequences=st.dictionaries(text, u64, max_size=3),
    ),
)


def _b58(text_: str) -> bytes:
    from simtrio.wire.base58 import b58decode

    return b58decode(text_)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@FAST
@given(request)
def test_request_round_trip(req: t.BacktestRequest) -> None:
    text_ = encode(req)
    assert decode_request(text_) == req
    assert decode_request(text_.encode()) == req
    assert encode(decode_request(text_)) == text_


@FAST
@given(response, st.none() | u64)
def test_response_round_trip(resp: t.BacktestResponse, seq_id: int | None) -> None:
    text_ = encode_response(resp, seq_id)
    assert decode_frame(text_) == (seq_id, resp)
    assert decode_response(text_.encode()) == resp
    assert encode_response(decode_response(text_), seq_id) == text_


@FAST
@given(backtest_error)
def test_error_round_trip(err: t.BacktestError) -> None:
    again = decode_backtest_error(orjson.loads(orjson.dumps(encode_backtest_error(err))))
    assert again == err
    assert again.kind == err.kind
    assert again.is_terminal == err.is_terminal


@FAST
@given(st.lists(address, min_size=2, max_size=6))
def test_signer_filter_is_ordered_by_value_and_deduplicated(addresses: list[str]) -> None:
    req = t.CreateBacktestSessionRequest(0, 1, signer_filter=addresses + addresses[:1])
    sent = orjson.loads(encode(req))["params"]["signerFilter"]
    values = [int.from_bytes(_b58(a), "big") for a in sent]
    assert values == sorted(set(values))
    assert set(sent) == set(addresses)


# --------------------------------------------------------------------------------------------
# Decoders raise ProtocolError and nothing else
# --------------------------------------------------------------------------------------------


RESPONSE_TYPES = get_args(t.BacktestResponse)
REQUEST_TYPES = (*get_args(t.BacktestRequest), t.UnknownRequest)


def _decode_all(data: str | bytes) -> None:
    """Every decoder either returns a value of its declared type or raises ProtocolError."""
    try:
        seq_id, response = decode_frame(data)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            decode_response(data)
    else:
        assert seq_id is None or 0 <= seq_id < 2**64
        assert isinstance(response, RESPONSE_TYPES)
        assert decode_response(data) == response
    try:
        request = decode_request(data)
    except ProtocolError:
        pass
    else:
        assert isinstance(request, REQUEST_TYPES)
    try:
        ranges = decode_available_ranges(data)
    except ProtocolError:
        pass
    else:
        assert all(isinstance(r, t.AvailableRange) for r in ranges)


@FAST
@given(st.text() | st.binary())
def test_random_input_only_protocol_error(data: str | bytes) -> None:
    _decode_all(data)


@FAST
@given(json_value)
def test_random_json_only_protocol_error(value: Any) -> None:
    _decode_all(orjson.dumps(value))


ALL_METHODS = sorted(KNOWN_METHODS)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _field_keys(cls: type) -> list[str]:
    fields = SPELLINGS[cls][1] or {}
    return sorted({k for name in fields for k in (name, _camel(name), fields[name])})


NEWTYPE_PAYLOADS: dict[type, type] = {
    t.Paused: t.PausedEvent,
    t.DiscoveryBatch: t.DiscoveryBatchEvent,
}


@st.composite
def near_miss_frame(draw: st.DrawFn) -> dict[str, Any]:
    """A known method whose params use the right keys with arbitrary values."""
    cls = draw(st.sampled_from(MESSAGE_CLASSES))
    keys = _field_keys(NEWTYPE_PAYLOADS.get(cls, cls))
    params: Any
    if keys:
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
        params = {k: draw(json_value | u64 | text) for k in chosen}
    else:
        params = draw(json_value)
    return {"method": SPELLINGS[cls][0], "params": params}


@FAST
@given(near_miss_frame())
def test_near_miss_params_only_protocol_error(frame: dict[str, Any]) -> None:
    _decode_all(orjson.dumps(frame))
    error = decode_backtest_error(frame)
    assert isinstance(error, t.BacktestError)


@FAST
@given(st.sampled_from(KNOWN_ERROR_CLASSES), json_value | json_object, st.booleans())
def test_known_error_tags_with_random_payloads(
    cls: type[t.BacktestError], payload: Any, external: bool
) -> None:
    value = {cls.KIND: payload} if external else {"kind": cls.KIND, "data": payload}
    error = decode_backtest_error(value)
    assert error.kind == cls.KIND
    assert error.is_terminal == (cls.KIND in TERMINAL_KINDS)


@FAST
@given(
    st.sampled_from(ALL_METHODS),
    json_value | json_object,
    st.none() | json_value,
)
def test_known_method_random_params_only_protocol_error(method: str, params: Any, seq: Any) -> None:
    frame: dict[str, Any] = {"method": method, "params": params}
    if seq is not None:
        frame["seqId"] = seq
    _decode_all(orjson.dumps(frame))
    decode_backtest_error(params)


@FAST
@given(
    st.sampled_from(["sessionEventV2", "sessionEventV1"]),
    text,
    u64,
    st.one_of(
        json_value,
        st.builds(
            lambda tag, params: {"method": tag, "params": params},
            st.sampled_from(sorted(KNOWN_METHODS)),
            json_value | json_object,
        ),
        st.builds(lambda tag, params: {tag: params}, st.sampled_from(ALL_METHODS), json_value),
    ),
)
def test_session_events_with_random_payloads(
    method: str, session_id: str, seq_id: int, event: Any
) -> None:
    frame = {
        "method": method,
        "params": {"session_id": session_id, "seq_id": seq_id, "event": event},
    }
    response = decode_response(orjson.dumps(frame))
    assert isinstance(response, t.SessionEventV1 | t.SessionEventV2)


def test_encoders_raise_invalid_params_for_values_the_wire_cannot_carry() -> None:
    bad: list[Any] = [
        t.ContinueParams(-1),
        t.ContinueParams(2**64),
        t.ContinueParams(True),  # a bool is not an integer
        t.ContinueToParams(1, batch_index=2**32),
        t.CreateBacktestSessionRequest(0, 1, signer_filter=["not-an-address"]),
        t.CreateBacktestSessionRequest(0, 1, disconnect_timeout_secs=2**16),
        t.CreateBacktestSessionRequest(0, 1, agents=[{1: "x"}]),  # type: ignore[dict-item]
        t.CreateBacktestSessionRequest(0, 1, agents=[{"x": object()}]),
        t.CreateBacktestSessionRequest(0, 1, agents=[{"x": float("inf")}]),
        t.CreateBacktestSessionRequest(0, 1, agents=[{"x": [float("nan")]}]),
        t.ContinueParams(1, modify_account_states={"bad": None}),  # type: ignore[dict-item]
        t.AttachBacktestSession("s", last_sequence="3"),  # type: ignore[arg-type]
        object(),
    ]
    for req in bad:
        try:
            encode(req)
        except InvalidParams:
            continue
        raise AssertionError(f"encoded {req!r}")
    for resp, seq in [(t.SlotNotification(-5), None), (t.Success(), -1), ("x", None)]:
        try:
            encode_response(resp, seq)  # type: ignore[arg-type]
        except InvalidParams:
            continue
        raise AssertionError(f"encoded {resp!r}")


@FAST
@given(
    st.text() | st.sampled_from(["backtest_a1", "", '"', "\\", "\x00session\x00", "é\u2028"]),
    st.integers(min_value=-2, max_value=2**64 + 1) | st.sampled_from([True, 1.0, "1", None]),
)
def test_plain_continue_is_the_generic_encoding(session_id: str, advance_count: Any) -> None:
    def outcome(encoder: Any) -> str:
        try:
            return str(encoder())
        except InvalidParams as exc:
            return f"InvalidParams: {exc}"

    generic = outcome(
        lambda: encode(t.ContinueSessionRequestV1(session_id, t.ContinueParams(advance_count)))
    )
    assert outcome(lambda: encode_plain_continue(session_id, advance_count)) == generic


def test_plain_continue_of_a_non_str_session_id_fails_like_the_generic_encoding() -> None:
    with pytest.raises(InvalidParams, match="a string"):
        encode_plain_continue(7, 1)  # type: ignore[arg-type]
