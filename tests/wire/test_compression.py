"""The per-connection zstd streams: the properties and failure vectors of compression.md."""

from __future__ import annotations

import tracemalloc

import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from simtrio.errors import InvalidParams, ProtocolError
from simtrio.wire.compression import (
    BLOCK_MAX,
    MAX_MESSAGE_SIZE,
    ZstdStreamDecoder,
    ZstdStreamEncoder,
)
from simtrio.wire.rpc import AccountDiffNotification, decode_rpc
from tests.wire.vectors import load_vectors

_MAGIC = b"\x28\xb5\x2f\xfd"
_GARBAGE = b"\x00\x01not zstd"
_SMALL_LIMIT = 1024 * 1024
_STREAM_NAMES = [
    "account_diff",
    "account_diff_created_account",
    "account_diff_deleted_account",
    "transaction",
    "subscription_complete",
]


def _texts() -> list[str]:
    entries = load_vectors("rpc.json")
    by_name = {entry["name"]: entry for entry in entries}
    return [by_name[name]["json"] for name in _STREAM_NAMES]


TEXTS = _texts()


def _reference_stream(texts: list[str]) -> list[bytes]:
    """Compress as compression.md §2 does (the reference recipe, independent of simtrio)."""
    stream = zstandard.ZstdCompressor(level=3).compressobj()
    return [
        stream.compress(text.encode("utf-8")) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        for text in texts
    ]


_PAD_HEAD = (
    '{"jsonrpc":"2.0","method":"accountDiffNotification","params":{"subscription":7,'
    '"result":{"context":{"slot":4001},"pad":"'
)
_PAD_TAIL = '"}}}'


def _encode_all(texts: list[str]) -> list[bytes]:
    encoder = ZstdStreamEncoder()
    return [encoder.encode(text) for text in texts]


def _bomb(total_text_size: int | None = None, pad: int | None = None) -> bytes:
    """One compressed message: an account diff padded with ``a``s, built without the text."""
    if pad is None:
        assert total_text_size is not None
        pad = total_text_size - len(_PAD_HEAD) - len(_PAD_TAIL)
    stream = zstandard.ZstdCompressor(level=3).compressobj()
    out = [stream.compress(_PAD_HEAD.encode())]
    chunk = b"a" * (1024 * 1024)
    left = pad
    while left > 0:
        out.append(stream.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    out.append(stream.compress(_PAD_TAIL.encode()))
    out.append(stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    return b"".join(out)


# --------------------------------------------------------------------------------------------
# §3: what a correct stream looks like
# --------------------------------------------------------------------------------------------


def test_frame_magic_only_on_first_message() -> None:
    for messages in (_reference_stream(TEXTS), _encode_all(TEXTS)):
        assert messages[0].startswith(_MAGIC)
        assert not any(message.startswith(_MAGIC) for message in messages[1:])


def test_fresh_decoder_yields_each_text_exactly() -> None:
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    for text, message in zip(TEXTS, _reference_stream(TEXTS), strict=True):
        assert decoder.decode(message) == text.encode("utf-8")
    assert not decoder.failed


def test_decoded_messages_are_rpc_messages() -> None:
    decoder = ZstdStreamDecoder()
    decoded = [decode_rpc(decoder.decode(m)) for m in _reference_stream(TEXTS)]
    assert isinstance(decoded[0], AccountDiffNotification)
    assert decoded[0].slot == 4001


def test_context_takeover_shrinks_repeated_messages() -> None:
    encoder = ZstdStreamEncoder()
    first = encoder.encode(TEXTS[0])
    again = encoder.encode(TEXTS[0])
    assert len(again) * 5 < len(first)
    decoder = ZstdStreamDecoder()
    assert decoder.decode(first) == decoder.decode(again) == TEXTS[0].encode()


def test_simtrio_encoder_output_decodes_with_python_zstandard() -> None:
    reference = zstandard.ZstdDecompressor().decompressobj()
    for text, message in zip(TEXTS, _encode_all(TEXTS), strict=True):
        assert reference.decompress(message) == text.encode("utf-8")


def test_encoder_accepts_bytes_and_str() -> None:
    encoder = ZstdStreamEncoder(level=1)
    decoder = ZstdStreamDecoder()
    assert decoder.decode(encoder.encode(b"{}")) == b"{}"
    assert decoder.decode(encoder.encode('{"é":1}')) == '{"é":1}'.encode()


def test_simtrio_encoder_and_decoder_round_trip_many_messages() -> None:
    encoder = ZstdStreamEncoder()
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    for i in range(200):
        text = TEXTS[i % len(TEXTS)]
        assert decoder.decode(encoder.encode(text)) == text.encode()


# --------------------------------------------------------------------------------------------
# §4: failure vectors
# --------------------------------------------------------------------------------------------


def test_garbage_first_message() -> None:
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    with pytest.raises(ProtocolError) as info:
        decoder.decode(_GARBAGE)
    assert info.value.excerpt is not None
    assert decoder.failed


def test_garbage_later_message() -> None:
    messages = _reference_stream(TEXTS)
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    decoder.decode(messages[0])
    with pytest.raises(ProtocolError):
        decoder.decode(_GARBAGE)


def test_later_message_on_fresh_decoder() -> None:
    messages = _reference_stream(TEXTS)
    with pytest.raises(ProtocolError):
        ZstdStreamDecoder(_SMALL_LIMIT).decode(messages[1])


def test_failure_is_remembered() -> None:
    messages = _reference_stream(TEXTS)
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    with pytest.raises(ProtocolError):
        decoder.decode(_GARBAGE)
    # Even a message a fresh decoder would accept is refused: the stream is gone.
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.decode(messages[0])


def _assert_flipped_byte_fails(messages: list[bytes], position: int) -> None:
    """The second message with one byte flipped fails, after the first decoded fine."""
    second = bytearray(messages[1])
    second[position] ^= 0xFF
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    decoder.decode(messages[0])
    with pytest.raises(ProtocolError):
        decode_rpc(decoder.decode(bytes(second)))


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte(where: str) -> None:
    messages = _reference_stream(TEXTS)
    size = len(messages[1])
    _assert_flipped_byte_fails(messages, {"first": 0, "middle": size // 2, "last": size - 1}[where])


def test_every_flipped_byte_fails() -> None:
    messages = _reference_stream(TEXTS)
    for position in range(len(messages[1])):
        _assert_flipped_byte_fails(messages, position)


def test_truncated_message() -> None:
    messages = _reference_stream(TEXTS)
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    decoder.decode(messages[0])
    with pytest.raises(ProtocolError, match="nothing"):
        decoder.decode(messages[1][:-3])


def test_empty_message() -> None:
    with pytest.raises(ProtocolError):
        ZstdStreamDecoder().decode(b"")


def test_bomb_is_refused() -> None:
    bomb = _bomb(pad=_SMALL_LIMIT)
    assert len(bomb) < 4096
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.decode(bomb)
    assert decoder.failed


def test_one_byte_over_the_limit_is_refused() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        ZstdStreamDecoder(_SMALL_LIMIT).decode(_bomb(total_text_size=_SMALL_LIMIT + 1))


def test_at_limit_is_accepted() -> None:
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    decoded = decoder.decode(_bomb(total_text_size=_SMALL_LIMIT))
    assert len(decoded) == _SMALL_LIMIT
    message = decode_rpc(decoded)
    assert isinstance(message, AccountDiffNotification)
    assert message.slot == 4001


def test_at_limit_then_more_on_the_same_stream() -> None:
    encoder = ZstdStreamEncoder()
    big = _PAD_HEAD + "a" * (_SMALL_LIMIT - len(_PAD_HEAD) - len(_PAD_TAIL)) + _PAD_TAIL
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    assert len(decoder.decode(encoder.encode(big))) == _SMALL_LIMIT
    assert decoder.decode(encoder.encode(TEXTS[0])) == TEXTS[0].encode()
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.decode(encoder.encode(big + " "))


def _peak_while_refusing(decoder: ZstdStreamDecoder, bomb: bytes) -> int:
    """Peak traced memory while ``decoder`` refuses ``bomb`` as too large."""
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="exceeds"):
            decoder.decode(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_default_limit_bomb_stays_bounded() -> None:
    bomb = _bomb(pad=MAX_MESSAGE_SIZE)
    decoder = ZstdStreamDecoder()
    assert decoder.limit == MAX_MESSAGE_SIZE
    assert _peak_while_refusing(decoder, bomb) < MAX_MESSAGE_SIZE + BLOCK_MAX + 256 * 1024


def test_small_bomb_stays_bounded() -> None:
    bomb = _bomb(pad=16 * _SMALL_LIMIT)
    decoder = ZstdStreamDecoder(_SMALL_LIMIT)
    assert _peak_while_refusing(decoder, bomb) < _SMALL_LIMIT + BLOCK_MAX + 256 * 1024


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(InvalidParams):
        ZstdStreamDecoder(limit)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4), st.booleans())
def test_random_bytes_only_raise_protocol_error(messages: list[bytes], prefix: bool) -> None:
    decoder = ZstdStreamDecoder(64 * 1024)
    if prefix:
        decoder.decode(_reference_stream(TEXTS[:1])[0])
    outcomes: list[object] = []
    for message in messages:
        try:
            outcomes.append(decoder.decode(message))
        except ProtocolError as exc:
            outcomes.append(exc)
    assert all(isinstance(o, bytes | ProtocolError) for o in outcomes)
    # Once a message failed, every later one fails too.
    first_failure = next((i for i, o in enumerate(outcomes) if isinstance(o, ProtocolError)), None)
    if first_failure is not None:
        assert all(isinstance(o, ProtocolError) for o in outcomes[first_failure:])


_any_texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=300)


@settings(max_examples=60, deadline=None)
@given(st.lists(_any_texts, min_size=1, max_size=6), st.integers(1, 6))
def test_streams_round_trip_both_ways(texts: list[str], level: int) -> None:
    ours = ZstdStreamEncoder(level=level)
    reference = zstandard.ZstdDecompressor().decompressobj()
    decoder = ZstdStreamDecoder(64 * 1024)
    for text, message in zip(texts, _reference_stream(texts), strict=True):
        assert decoder.decode(message) == text.encode("utf-8")
        assert reference.decompress(ours.encode(text)) == text.encode("utf-8")
