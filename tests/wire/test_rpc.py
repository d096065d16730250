"""Data-plane JSON-RPC messages: the golden vectors of rpc.json plus tolerance and safety."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from simtrio.errors import InvalidParams, ProtocolError
from simtrio.wire.rpc import (
    ACCOUNT_DIFF_SUBSCRIBE,
    ACCOUNT_DIFF_UNSUBSCRIBE,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    TRANSACTION_SUBSCRIBE,
    AccountDiffNotification,
    RpcContext,
    RpcMessage,
    Subscribe,
    SubscribeAck,
    SubscribeError,
    SubscriptionComplete,
    TransactionNotification,
    UnknownRpcMessage,
    decode_rpc,
)
from simtrio.wire.rpc_server import (
    InvalidRpcRequest,
    UnknownRpcRequest,
    Unsubscribe,
    decode_rpc_request,
    decode_subscribe_request,
    encode_rpc,
    encode_unsubscribe_reply,
)
from tests.wire.vectors import SHARED_VECTORS, VENDORED_VECTORS, load_vectors

VECTORS = load_vectors("rpc.json")
TO_SERVER = [v for v in VECTORS if v["direction"] == "to_server"]
TO_CLIENT = [v for v in VECTORS if v["direction"] == "to_client"]
PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"

_MESSAGE_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        SubscribeAck,
        SubscribeError,
        AccountDiffNotification,
        TransactionNotification,
        SubscriptionComplete,
        UnknownRpcMessage,
    )
}


def _expected(expect: dict[str, Any]) -> RpcMessage:
    fields = dict(expect)
    cls = _MESSAGE_CLASSES[fields.pop("variant")]
    message: RpcMessage = cls(**fields)
    return message


def _input(vector: dict[str, Any]) -> str:
    text: str = vector["json"] if "json" in vector else vector["text"]
    return text


def test_vectors_are_present() -> None:
    assert len(TO_SERVER) >= 6
    assert len(TO_CLIENT) >= 16


def test_vendored_vectors_match_the_shared_spec() -> None:
    if not SHARED_VECTORS.is_dir():
        pytest.skip("shared/spec/vectors is not checked out beside the repository")
    for path in sorted(VENDORED_VECTORS.glob("*.json")):
        assert path.read_bytes() == (SHARED_VECTORS / path.name).read_bytes(), path.name


@pytest.mark.parametrize("vector", TO_SERVER, ids=[v["name"] for v in TO_SERVER])
def test_to_server_vector_encodes_exactly(vector: dict[str, Any]) -> None:
    request = dict(vector["request"])
    assert request.pop("variant") == "Subscribe"
    subscribe = Subscribe(**request)
    assert subscribe.encode() == vector["json"]
    # The reference server reads back exactly what the client sent.
    assert decode_subscribe_request(vector["json"]) == subscribe


@pytest.mark.parametrize("vector", TO_CLIENT, ids=[v["name"] for v in TO_CLIENT])
def test_to_client_vector_decodes(vector: dict[str, Any]) -> None:
    text = _input(vector)
    expect = vector["expect"]
    if "error" in expect:
        assert expect["error"] == "ProtocolError"
        with pytest.raises(ProtocolError):
            decode_rpc(text)
        with pytest.raises(ProtocolError):
            decode_rpc(text.encode("utf-8"))
        return
    decoded = decode_rpc(text)
    assert decoded == _expected(expect)
    assert decode_rpc(text.encode("utf-8")) == decoded
    if vector["canonical"]:
        assert encode_rpc(decoded) == text


@pytest.mark.parametrize("vector", TO_CLIENT, ids=[v["name"] for v in TO_CLIENT])
def test_every_decoded_message_re_encodes_to_itself(vector: dict[str, Any]) -> None:
    if "error" in vector["expect"]:
        return
    decoded = decode_rpc(_input(vector))
    assert decode_rpc(encode_rpc(decoded)) == decoded


def test_notification_context_slot() -> None:
    by_name = {v["name"]: v for v in TO_CLIENT}
    diff = decode_rpc(by_name["account_diff_slot_without_context"]["json"])
    assert isinstance(diff, AccountDiffNotification)
    assert diff.context == RpcContext(4003)
    assert diff.context.slot == 4003
    tx = decode_rpc(by_name["transaction_wrapped_in_context_value"]["json"])
    assert isinstance(tx, TransactionNotification)
    assert tx.context.slot == 4001
    assert tx.transaction["blockTime"] == 1767607200


def _diff(result: Any, subscription: Any = 1) -> str:
    params = {"subscription": subscription, "result": result}
    message = {"jsonrpc": "2.0", "method": "accountDiffNotification", "params": params}
    return orjson.dumps(message).decode()


@pytest.mark.parametrize(
    "text",
    [
        _diff({"context": {"slot": True}}),
        _diff({"context": {"slot": 4001.0}}),
        _diff({"context": {"slot": "4001"}}),
        _diff({"context": {"slot": -1}}),
        _diff({"context": {"slot": 1}}).replace(":1}", ":18446744073709551616}"),
        _diff({"context": {}, "account": "x"}),
        _diff({"slot": None}),
        _diff({"context": {"slot": 1}}, subscription="1"),
        _diff({"context": {"slot": 1}}, subscription=True),
        _diff({"context": {"slot": 1}}, subscription=-2),
        _diff({"context": {"slot": 1}, "account": 5}),
        _diff({"context": {"slot": 1}, "signature": ["s"]}),
        _diff([{"context": {"slot": 1}}]),
        '{"jsonrpc":"2.0","method":"accountDiffNotification","params":[1]}',
        '{"jsonrpc":"2.0","method":7,"params":{"subscription":1}}',
        '{"jsonrpc":"2.0","method":"subscriptionComplete","params":{}}',
        '{"jsonrpc":"2.0","method":"transactionNotification","params":{"subscription":1,"result":{}}}',
        '{"jsonrpc":"2.0","id":1,"result":true}',
        '{"jsonrpc":"2.0","id":1,"result":-1}',
        '{"jsonrpc":"2.0","id":1,"result":"7"}',
        '{"jsonrpc":"2.0","id":"1","result":7}',
        '{"jsonrpc":"2.0","result":7}',
        '{"jsonrpc":"2.0","id":1,"error":"boom"}',
        '{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}',
        '{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":2}}',
        '{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"m"}}',
        "{}",
    ],
)
def test_values_are_never_coerced(text: str) -> None:
    decoded = decode_rpc(text)
    assert decoded == UnknownRpcMessage(orjson.loads(text))


def test_slot_comes_from_context_before_result_slot() -> None:
    decoded = decode_rpc(_diff({"context": {"slot": 5}, "slot": 6}))
    assert isinstance(decoded, AccountDiffNotification)
    assert decoded.slot == 5


def test_error_reply_tolerates_missing_message_and_null_id() -> None:
    assert decode_rpc('{"jsonrpc":"2.0","id":null,"error":{"code":-32700}}') == SubscribeError(
        None, -32700, ""
    )
    assert decode_rpc('{"id":3,"error":{"code":-1,"message":"m","data":[1]}}') == SubscribeError(
        3, -1, "m"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "subscriptionComplete",
        "[]",
        "null",
        "7",
        '"x"',
        "{",
        '{"a":1}x',
        '{"a":NaN}',
        '{"a":"\\ud800"}',
        "[" * 5000,
    ],
)
def test_non_objects_are_protocol_errors(text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_rpc(text)
    assert info.value.excerpt is not None
    assert len(info.value.excerpt) < 100


def test_protocol_error_excerpt_is_short() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_rpc(b"\xff" * 100_000)
    assert len(str(info.value)) < 600


# --------------------------------------------------------------------------------------------
# Encoding (server side) and the Subscribe request
# --------------------------------------------------------------------------------------------


def test_transaction_without_its_own_slot_is_sent_wrapped() -> None:
    message = TransactionNotification(3, 4005, {"transaction": {"signatures": []}})
    text = encode_rpc(message)
    assert '"result":{"context":{"slot":4005},"value":{"transaction"' in text
    assert decode_rpc(text) == message
    odd = TransactionNotification(3, 4005, {"slot": 4004})
    assert decode_rpc(encode_rpc(odd)) == odd
    with pytest.raises(InvalidParams):
        encode_rpc(TransactionNotification(3, 4005, [1, 2]))


def test_encode_account_diff_writes_absent_values_as_null() -> None:
    text = encode_rpc(AccountDiffNotification(1, 4000))
    assert text == (
        '{"jsonrpc":"2.0","method":"accountDiffNotification","params":{"subscription":1,'
        '"result":{"context":{"slot":4000},"account":null,"signature":null,"pre":null,'
        '"post":null}}}'
    )


def test_encode_unknown_message_writes_raw() -> None:
    raw = {"jsonrpc": "2.0", "method": "x", "params": {"a": [1, "é/"]}}
    assert (
        encode_rpc(UnknownRpcMessage(raw))
        == '{"jsonrpc":"2.0","method":"x","params":{"a":[1,"é/"]}}'
    )


def test_encode_rejects_values_json_cannot_hold() -> None:
    with pytest.raises(InvalidParams):
        encode_rpc(AccountDiffNotification(1, 2, pre={"lamports": 2**64}))
    with pytest.raises(InvalidParams):
        encode_rpc(AccountDiffNotification(1, 2, pre={"x": object()}))


def test_subscribe_without_compression_and_error_reply_encoding() -> None:
    plain = Subscribe(TRANSACTION_SUBSCRIBE, 4, PROGRAM, 9, compression=False)
    assert plain.encode() == (
        '{"jsonrpc":"2.0","id":4,"method":"transactionSubscribe","params":'
        f'["{PROGRAM}",{{"replayFromSlot":9}}]}}'
    )
    assert encode_rpc(SubscribeError(None, -32602, "bad")) == (
        '{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"bad"}}'
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "slotSubscribe"},
        {"id": True},
        {"id": "1"},
        {"program_id": 5},
        {"replay_from_slot": 2**63},
        {"replay_from_slot": False},
        {"replay_from_slot": 1.0},
    ],
)
def test_subscribe_rejects_bad_fields(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "method": ACCOUNT_DIFF_SUBSCRIBE,
        "id": 1,
        "program_id": PROGRAM,
        "replay_from_slot": None,
    }
    fields.update(kwargs)
    with pytest.raises(InvalidParams):
        Subscribe(**fields)


def test_subscribe_accepts_signed_cursor() -> None:
    assert '"replayFromSlot":-5' in Subscribe(ACCOUNT_DIFF_SUBSCRIBE, 1, PROGRAM, -5).encode()


# --------------------------------------------------------------------------------------------
# Server-side request decoding
# --------------------------------------------------------------------------------------------


def _request(method: Any, params: Any, request_id: Any = 1) -> str:
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    ).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _request(
                ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM, {"compression": "zstd", "replay_from_slot": 7}]
            ),
            Subscribe(ACCOUNT_DIFF_SUBSCRIBE, 1, PROGRAM, 7),
        ),
        (
            _request(
                TRANSACTION_SUBSCRIBE,
                [PROGRAM, {"replayFromSlot": 8, "replay_from_slot": 9, "commitment": "x"}],
                5,
            ),
            Subscribe(TRANSACTION_SUBSCRIBE, 5, PROGRAM, 8, compression=False),
        ),
        (
            _request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM, {"replayFromSlot": None}]),
            Subscribe(ACCOUNT_DIFF_SUBSCRIBE, 1, PROGRAM, None, compression=False),
        ),
        (
            _request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM]),
            Subscribe(ACCOUNT_DIFF_SUBSCRIBE, 1, PROGRAM, None, compression=False),
        ),
        (
            _request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM, "zstd"]),
            Subscribe(ACCOUNT_DIFF_SUBSCRIBE, 1, PROGRAM, None, compression=False),
        ),
        (
            _request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM, {"compression": "gzip"}]),
            Subscribe(ACCOUNT_DIFF_SUBSCRIBE, 1, PROGRAM, None, compression=False),
        ),
        (
            _request(ACCOUNT_DIFF_UNSUBSCRIBE, [7], 3),
            Unsubscribe(ACCOUNT_DIFF_UNSUBSCRIBE, 3, 7),
        ),
        (_request("slotSubscribe", [], 2), UnknownRpcRequest(2, "slotSubscribe")),
        (
            _request("logsSubscribe", [{"mentions": []}], 2),
            InvalidRpcRequest(2, 'expected [{"mentions": [one program id]}, config]'),
        ),
        (
            _request("logsSubscribe", [{"mentions": ["P"]}, {"replayFromSlot": 5}], 4),
            Subscribe("logsSubscribe", 4, "P", 5, compression=False),
        ),
    ],
)
def test_decode_request(text: str, expected: Any) -> None:
    assert decode_rpc_request(text) == expected


@pytest.mark.parametrize(
    ("text", "request_id"),
    [
        ("not json", None),
        ("[1]", None),
        ('{"id":1,"params":[]}', 1),
        ('{"id":1,"method":5}', 1),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM], None), None),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM], "1"), None),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM], True), None),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [], 2), 2),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, None, 2), 2),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, {"program": PROGRAM}, 2), 2),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [5, {}], 2), 2),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM, {"replayFromSlot": "4"}], 2), 2),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM, {"replayFromSlot": 1.5}], 2), 2),
        (_request(ACCOUNT_DIFF_SUBSCRIBE, [PROGRAM, {"replay_from_slot": 2**63}], 2), 2),
        (_request(ACCOUNT_DIFF_UNSUBSCRIBE, ["7"], 2), 2),
        (_request(ACCOUNT_DIFF_UNSUBSCRIBE, [], 2), 2),
    ],
)
def test_decode_request_invalid(text: str, request_id: int | None) -> None:
    decoded = decode_rpc_request(text)
    assert isinstance(decoded, InvalidRpcRequest)
    assert decoded.id == request_id
    assert decoded.code == INVALID_PARAMS
    reply = decoded.error_reply()
    assert reply.code == INVALID_PARAMS
    assert reply.id == request_id
    assert decode_rpc(encode_rpc(reply)) == reply


def test_unknown_method_reply() -> None:
    decoded = decode_rpc_request(_request("slotSubscribe", [], 9))
    assert isinstance(decoded, UnknownRpcRequest)
    assert decoded.code == METHOD_NOT_FOUND
    assert decoded.error_reply() == SubscribeError(
        9, METHOD_NOT_FOUND, "method not found: slotSubscribe"
    )


def test_unsubscribe_reply() -> None:
    assert encode_unsubscribe_reply(3) == '{"jsonrpc":"2.0","id":3,"result":true}'
    assert decode_rpc(encode_unsubscribe_reply(3)) == UnknownRpcMessage(
        {"jsonrpc": "2.0", "id": 3, "result": True}
    )


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_ints = st.integers(-(2**63), 2**63 - 1)
_uints = st.integers(0, 2**64 - 1)
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_scalars = (
    st.none() | st.booleans() | _ints | st.floats(allow_nan=False, allow_infinity=False) | _text
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "jsonrpc",
        "id",
        "method",
        "params",
        "result",
        "error",
        "subscription",
        "context",
        "slot",
        "value",
        "transaction",
        "account",
        "signature",
        "pre",
        "post",
        "code",
        "message",
    ]
)
_methods = st.sampled_from(
    ["accountDiffNotification", "transactionNotification", "subscriptionComplete", "x"]
)
near_messages = st.recursive(
    _scalars | _methods | _uints,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_decode_random_input_only_raises_protocol_error(data: str | bytes) -> None:
    decoded: object
    try:
        decoded = decode_rpc(data)
    except ProtocolError as exc:
        decoded = exc
    assert isinstance(decoded, (ProtocolError, *_MESSAGE_CLASSES.values()))


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, near_messages))
def test_decode_any_json_value(value: Any) -> None:
    text = orjson.dumps(value)
    if not isinstance(value, dict):
        with pytest.raises(ProtocolError):
            decode_rpc(text)
        return
    decoded = decode_rpc(text)
    # Whatever was understood survives a trip through the server's encoder.
    assert decode_rpc(encode_rpc(decoded)) == decoded


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60), json_values.map(orjson.dumps)))
def test_decode_request_never_raises(data: str | bytes) -> None:
    decoded = decode_rpc_request(data)
    assert isinstance(decoded, Subscribe | Unsubscribe | UnknownRpcRequest | InvalidRpcRequest)


_optional_text = st.none() | _text
messages: st.SearchStrategy[RpcMessage] = st.one_of(
    st.builds(SubscribeAck, _ints, _uints),
    st.builds(SubscribeError, st.none() | _ints, _ints, _text),
    st.builds(
        AccountDiffNotification,
        _uints,
        _uints,
        _optional_text,
        _optional_text,
        json_values,
        json_values,
    ),
    st.builds(TransactionNotification, _uints, _uints, st.dictionaries(_keys | _text, json_values)),
    st.builds(SubscriptionComplete, _uints),
)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_encode_decode_round_trip(message: RpcMessage) -> None:
    assert decode_rpc(encode_rpc(message)) == message


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([ACCOUNT_DIFF_SUBSCRIBE, TRANSACTION_SUBSCRIBE]),
    _ints,
    _text,
    st.none() | _ints,
    st.booleans(),
)
def test_subscribe_round_trip(
    method: str, request_id: int, program_id: str, replay: int | None, compression: bool
) -> None:
    request = Subscribe(method, request_id, program_id, replay, compression=compression)
    assert decode_rpc_request(request.encode()) == request


def test_logs_subscribe_is_standard_pubsub() -> None:
    from simtrio.wire.rpc import LOGS_SUBSCRIBE

    text = Subscribe(LOGS_SUBSCRIBE, 1, "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA").encode()
    assert text == (
        '{"jsonrpc":"2.0","id":1,"method":"logsSubscribe","params":'
        '[{"mentions":["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"]},'
        '{"commitment":"confirmed","compression":"zstd"}]}'
    )
    replay = Subscribe(LOGS_SUBSCRIBE, 2, "p", replay_from_slot=7, compression=False).encode()
    assert '"replayFromSlot":7' in replay


def test_logs_notification_round_trip() -> None:
    from simtrio.wire.rpc import LogsNotification

    text = (
        '{"jsonrpc":"2.0","method":"logsNotification","params":{"subscription":7,"result":'
        '{"context":{"slot":4001},"value":{"signature":"sig","err":null,'
        '"logs":["Program x invoke [1]","Program x success"]}}}}'
    )
    message = decode_rpc(text)
    assert message == LogsNotification(
        7, 4001, "sig", None, ("Program x invoke [1]", "Program x success")
    )
    assert encode_rpc(message) == text
    bad = text.replace('"logs":[', '"logs":[1,')
    assert not isinstance(decode_rpc(bad), LogsNotification)
