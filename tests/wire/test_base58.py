"""Base58 and the address order used by the canonical encoder (protocol §2.5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from simtrio.errors import InvalidParams
from simtrio.wire.base58 import address_value, b58decode, b58encode, is_address, sort_addresses

TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # 43 characters
ATOKEN = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"  # 44 characters
WALLET = "6duoaQ4JsN96MVWhKgWDKztTcqHS1imTyWyu9hqQBUpg"
SYSTEM = "11111111111111111111111111111111"


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", ""),
        (b"\x00", "1"),
        (b"\x00\x00\x28\x7f\xb4\xcd", "11233QC4"),
        (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
        (b"\x00" * 32, SYSTEM),
    ],
)
def test_known_encodings(raw: bytes, encoded: str) -> None:
    assert b58encode(raw) == encoded
    assert b58decode(encoded) == raw


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_round_trip(raw: bytes) -> None:
    assert b58decode(b58encode(raw)) == raw


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_address_value_is_the_big_endian_value(raw: bytes) -> None:
    address = b58encode(raw)
    assert is_address(address)
    assert address_value(address) == int.from_bytes(raw, "big")


def test_system_program_is_zero() -> None:
    assert address_value(SYSTEM) == 0


def test_order_is_by_value_not_text() -> None:
    assert sorted([ATOKEN, TOKEN]) == [ATOKEN, TOKEN]  # text order
    assert sort_addresses([ATOKEN, WALLET, TOKEN, ATOKEN]) == [TOKEN, WALLET, ATOKEN]


def test_sort_deduplicates_and_accepts_any_iterable() -> None:
    assert sort_addresses(iter([WALLET, WALLET])) == [WALLET]
    assert sort_addresses(frozenset({TOKEN, ATOKEN})) == [TOKEN, ATOKEN]
    assert sort_addresses([]) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-an-address",
        "0" * 32,  # '0' is not in the alphabet
        "O" + TOKEN[1:],
        "l" + TOKEN[1:],
        b58encode(b"\x01" * 31),
        b58encode(b"\x01" * 33),
        "1" + SYSTEM,  # 33 zero bytes
        "z" * 45,
        "z" * 10_000,
    ],
)
def test_rejects_non_addresses(text: str) -> None:
    assert not is_address(text)
    with pytest.raises(InvalidParams):
        address_value(text)
    with pytest.raises(InvalidParams):
        sort_addresses([TOKEN, text])


def test_rejects_non_str() -> None:
    assert not is_address(b"abc")
    assert not is_address(None)
    with pytest.raises(InvalidParams):
        address_value(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams):
        b58decode(b"abc")  # type: ignore[arg-type]


def test_a_bare_string_is_not_a_collection() -> None:
    with pytest.raises(InvalidParams):
        sort_addresses(TOKEN)


def test_decode_rejects_foreign_characters() -> None:
    with pytest.raises(InvalidParams):
        b58decode("abc0")
