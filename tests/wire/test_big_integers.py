"""Integers beyond 64 bits in frames kept verbatim stay exact (orjson reads them as floats)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from simtrio.errors import InvalidParams
from simtrio.wire import types as t
from simtrio.wire.codec import decode_frame, encode_response

BIG = 123456789012345678901234567890
BEYOND_U64 = 2**64
BELOW_I64 = -(2**63) - 1


def test_unknown_method_keeps_big_integers_exact() -> None:
    text = (
        '{"seqId":3,"method":"brandNew","params":'
        f'{{"big":{BIG},"u64":{BEYOND_U64},"i64":{BELOW_I64},"f":1.5,"l":[1,2.5,{BIG}]}}}}'
    )
    seq, response = decode_frame(text)
    assert seq == 3
    assert response == t.UnknownResponse(
        "brandNew",
        {"big": BIG, "u64": BEYOND_U64, "i64": BELOW_I64, "f": 1.5, "l": [1, 2.5, BIG]},
    )
    assert type(response.params["big"]) is int
    assert encode_response(response, seq) == text


def test_params_that_do_not_fit_keep_big_integers_exact() -> None:
    seq, response = decode_frame(f'{{"method":"slotNotification","params":{BIG}}}')
    assert seq is None
    assert response == t.UnknownResponse("slotNotification", BIG)
    assert type(response.params) is int


def test_floats_stay_floats() -> None:
    _, response = decode_frame('{"method":"brandNew","params":{"f":1e3,"g":0.1}}')
    assert response == t.UnknownResponse("brandNew", {"f": 1000.0, "g": 0.1})
    assert type(response.params["f"]) is float


def test_unwritable_values_are_still_refused() -> None:
    with pytest.raises(InvalidParams):
        encode_response(t.UnknownResponse("brandNew", {"x": object()}))


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


def _exactly(value: object) -> object:
    """``value`` with every number tagged by its type, so 2**70 and 2.0**70 differ."""
    if isinstance(value, dict):
        return {key: _exactly(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exactly(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (type(value).__name__, value)
    return value


@given(_JSON, st.integers(min_value=2**64, max_value=2**200) | st.integers(max_value=-(2**63) - 1))
def test_unknown_params_round_trip_exactly(params: object, big: int) -> None:
    params = [params, big]
    text = json.dumps({"method": "brandNew", "params": params}, separators=(",", ":"))
    _, response = decode_frame(text)
    assert isinstance(response, t.UnknownResponse)
    assert _exactly(response.params) == _exactly(json.loads(text)["params"])
    _, again = decode_frame(encode_response(response))
    assert isinstance(again, t.UnknownResponse)
    assert _exactly(again.params) == _exactly(response.params)
