"""The redactor that keeps the API key out of decoded server messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from simtrio.wire.codec import decode_frame
from simtrio.wire.redact import MIN_SECRET_LENGTH, REDACTED, Redactor, redactor_for
from simtrio.wire.rpc import decode_rpc

KEY = "sk_live_Q2w9Zx7Lm4"


def test_no_redactor_without_a_usable_key() -> None:
    assert redactor_for(()) is None
    assert redactor_for(("",)) is None
    assert redactor_for(("k" * (MIN_SECRET_LENGTH - 1),)) is None
    assert redactor_for(("k" * MIN_SECRET_LENGTH,)) is not None


def test_a_message_without_the_key_is_returned_as_is() -> None:
    redactor = Redactor((KEY,))
    text = '{"method":"status","params":{"status":"running"}}'
    assert redactor.message(text) is text
    data = text.encode()
    assert redactor.message(data) is data


def test_the_key_is_replaced_in_values_and_member_names() -> None:
    redactor = Redactor((KEY,))
    text = json.dumps(
        {"method": "x", "params": {"note": f"bad key {KEY}!", KEY: [1, f"{KEY}{KEY}", None]}}
    )
    out = redactor.message(text)
    assert isinstance(out, str)
    assert KEY not in out
    assert json.loads(out) == {
        "method": "x",
        "params": {"note": f"bad key {REDACTED}!", REDACTED: [1, REDACTED * 2, None]},
    }


def test_bytes_are_redacted_like_text() -> None:
    out = Redactor((KEY,)).message(json.dumps({"m": KEY}).encode())
    assert json.loads(out) == {"m": REDACTED}


@pytest.mark.parametrize("key", ['quote"key\\slash', "clé-secrète-ünï", "tab\tkey\u2028x"])
def test_a_key_written_with_json_escapes_is_found(key: str) -> None:
    redactor = Redactor((key,))
    for text in (json.dumps({"m": key}), json.dumps({"m": key}, ensure_ascii=False)):
        out = redactor.message(text)
        assert isinstance(out, str)
        assert key not in out
        assert json.dumps(key)[1:-1] not in out
        assert json.loads(out) == {"m": REDACTED}


def test_large_integers_and_floats_survive_the_slow_path() -> None:
    text = '{"method":"x","params":{"big":123456789012345678901234567890,"f":0.1,"k":"%s"}}'
    out = Redactor((KEY,)).message(text % KEY)
    assert json.loads(out) == {
        "method": "x",
        "params": {"big": 123456789012345678901234567890, "f": 0.1, "k": REDACTED},
    }


def test_text_that_is_not_json_is_replaced_in_place() -> None:
    redactor = Redactor((KEY,))
    assert redactor.message(f"oops {KEY} {{") == f"oops {REDACTED} {{"
    raw = b"\xff\xfe" + KEY.encode()
    assert redactor.message(raw) == b"\xff\xfe" + REDACTED.encode()


def test_decoding_a_redacted_frame_gives_a_clean_error_and_repr() -> None:
    redactor = Redactor((KEY,))
    frame = json.dumps(
        {"seqId": 4, "method": "error", "params": {"Internal": {"error": f"key {KEY}"}}}
    )
    seq, response = decode_frame(redactor.message(frame))
    assert seq == 4
    assert KEY not in repr(response)
    assert REDACTED in repr(response)
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": KEY}})
    assert KEY not in repr(decode_rpc(redactor.message(rpc)))


def test_repr_shows_no_secret() -> None:
    assert KEY not in repr(Redactor((KEY,)))


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
))  # fmt: skip
def test_any_json_with_the_key_planted_comes_out_clean(value: object) -> None:
    redactor = Redactor((KEY,))
    for text in (json.dumps([value, KEY]), json.dumps({KEY: value, "x": f"a{KEY}b"})):
        out = redactor.message(text)
        assert isinstance(out, str)
        assert KEY not in out
        json.loads(out)
