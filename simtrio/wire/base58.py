"""Base58 (Bitcoin alphabet) for Solana addresses.

The canonical encoder orders address-keyed sets and maps by the 32-byte value each address
denotes (protocol §2.5). Text order is not the same thing: a 43-character address can denote a
smaller value than a 44-character one that sorts before it as text, so ordering needs the value.

Addresses and signatures are read and written by solders (``Pubkey``, ``Signature``); the
generic :func:`b58encode` / :func:`b58decode` remain for byte strings of other lengths, for
which solders has no type.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING

from solders.pubkey import Pubkey
from solders.signature import Signature

from simtrio.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Iterable

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ADDRESS_LEN = 32
"""Bytes in a Solana address (public key)."""

_DIGITS: dict[str, int] = {c: i for i, c in enumerate(ALPHABET)}
# 32 bytes never need more than 44 base58 digits; longer text cannot be an address, and the cap
# keeps hostile input from costing quadratic big-integer work.
_MAX_ADDRESS_TEXT = 44
_SIGNATURE_LEN = 64


def _decode_parts(text: str) -> tuple[int, int]:
    """Split base58 text into (leading zero bytes, integer value of the rest)."""
    zeros = 0
    for ch in text:
        if ch != "1":
            break
        zeros += 1
    value = 0
    digits = _DIGITS
    for ch in text[zeros:]:
        digit = digits.get(ch)
        if digit is None:
            raise InvalidParams(f"not base58 text: {text[:60]!r}")
        value = value * 58 + digit
    return zeros, value


def b58decode(text: str) -> bytes:
    """Decode base58 text; raises ``InvalidParams`` on a character outside the alphabet."""
    if not isinstance(text, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"base58 text must be a str, not {type(text).__name__}")
    zeros, value = _decode_parts(text)
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return b"\x00" * zeros + body


def b58encode(data: bytes) -> str:
    """Encode bytes as base58, each leading zero byte as one ``1``."""
    raw = bytes(data)
    if len(raw) == ADDRESS_LEN:
        return str(Pubkey.from_bytes(raw))
    if len(raw) == _SIGNATURE_LEN:
        return str(Signature.from_bytes(raw))
    stripped = raw.lstrip(b"\x00")
    zeros = len(raw) - len(stripped)
    value = int.from_bytes(stripped, "big")
    out: list[str] = []
    while value:
        value, digit = divmod(value, 58)
        out.append(ALPHABET[digit])
    return "1" * zeros + "".join(reversed(out))


def address_value(text: str) -> int:
    """The integer a base58 address denotes; ``InvalidParams`` unless it is exactly 32 bytes.

    Ordering by this integer is ordering by the 32-byte big-endian value.
    """
    if not isinstance(text, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"an address must be a str, not {type(text).__name__}")
    if not text or len(text) > _MAX_ADDRESS_TEXT:
        raise InvalidParams(f"not a 32-byte base58 address: {text[:60]!r}")
    try:
        raw = bytes(Pubkey.from_string(text))
    except ValueError:
        raise InvalidParams(f"not a 32-byte base58 address: {text!r}") from None
    return int.from_bytes(raw, "big")


def is_address(text: object) -> bool:
    """True when ``text`` is base58 text of exactly 32 bytes."""
    if not isinstance(text, str):
        return False
    try:
        address_value(text)
    except InvalidParams:
        return False
    return True


def sort_addresses(addresses: Iterable[str]) -> list[str]:
    """De-duplicate addresses and order them by value; ``InvalidParams`` on a non-address.

    A bare ``str`` is rejected rather than iterated character by character.
    """
    if isinstance(addresses, str):
        raise InvalidParams("expected a collection of addresses, got a single str")
    by_value: dict[int, str] = {}
    for address in addresses:
        by_value.setdefault(address_value(address), address)
    return [by_value[v] for v in sorted(by_value)]
