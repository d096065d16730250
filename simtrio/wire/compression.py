"""Per-connection zstd streams of the data plane (protocol §10).

The server keeps one zstd frame open per connection and flushes a block per message, so
every Binary message depends on all earlier ones (context takeover): one decoder per
connection, fed strictly in order, thrown away with the connection.

A compressed message is untrusted input that can expand without bound, so the decoder feeds
each message in slices sized from the room left under the limit: a zstd block decodes to at
most 128 KiB and takes at least one input byte, so a slice of ``k`` bytes releases at most
``k`` blocks, and decoding stops as soon as the running total passes the limit.
"""

from __future__ import annotations

__all__: list[str] = []

import zstandard

from simtrio.errors import InvalidParams, ProtocolError

BLOCK_MAX = 128 * 1024
"""The most one zstd block can decode to."""

MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Default bound on the decoded size of one message (protocol §1.7)."""

DEFAULT_LEVEL = 3


class ZstdStreamDecoder:
    """Decodes the Binary messages of one connection, each to exactly its own bytes.

    Any failure is final: the stream state is unusable afterwards, so later calls raise too
    and the connection has to be replaced (with a fresh decoder).
    """

    def __init__(self, limit: int = MAX_MESSAGE_SIZE) -> None:
        if limit < 1:
            raise InvalidParams("limit must be positive")
        self._limit = limit
        self._decoder = zstandard.ZstdDecompressor().decompressobj()
        self._decompress = self._decoder.decompress
        self._one_slice = max(1, limit // BLOCK_MAX)
        """Messages up to this many bytes decode in one call (the first slice of ``_decode``)."""
        self._failed = False

    @property
    def limit(self) -> int:
        """Largest accepted decoded size of one message, in bytes (inclusive)."""
        return self._limit

    @property
    def failed(self) -> bool:
        """True once a message failed to decode; the decoder then refuses everything."""
        return self._failed

    def decode(self, message: bytes) -> bytes:
        """Decode one Binary message.

        Raises:
            ProtocolError: corrupt input, a message that decodes to nothing, a decoded size
                over the limit, or an earlier failure on this stream.
        """
        if self._failed:
            raise ProtocolError("compressed stream already failed")
        if len(message) <= self._one_slice:
            # Hot path: the whole message is the first (and only) slice of the general loop.
            try:
                out = self._decompress(message)
            except zstandard.ZstdError as exc:
                self._failed = True
                raise ProtocolError(f"corrupt compressed message ({exc})", data=message) from None
            if out and len(out) <= self._limit:
                return out
            self._failed = True
            if out:
                raise ProtocolError(
                    f"decompressed message exceeds {self._limit} bytes", data=message
                )
            raise ProtocolError("compressed message decoded to nothing", data=message)
        try:
            return self._decode(message)
        except ProtocolError:
            self._failed = True
            raise

    def _decode(self, message: bytes) -> bytes:
        parts: list[bytes] = []
        size = 0
        pos = 0
        view = memoryview(message)
        while pos < len(view):
            step = max(1, (self._limit - size) // BLOCK_MAX)
            try:
                out = self._decompress(view[pos : pos + step])
            except zstandard.ZstdError as exc:
                raise ProtocolError(f"corrupt compressed message ({exc})", data=message) from None
            pos += step
            size += len(out)
            if size > self._limit:
                raise ProtocolError(
                    f"decompressed message exceeds {self._limit} bytes", data=message
                )
            if out:
                parts.append(out)
        if not parts:
            raise ProtocolError("compressed message decoded to nothing", data=message)
        return parts[0] if len(parts) == 1 else b"".join(parts)


class ZstdStreamEncoder:
    """The server half: one open zstd frame per connection, one flushed block per message."""

    def __init__(self, level: int = DEFAULT_LEVEL) -> None:
        self._encoder = zstandard.ZstdCompressor(level=level).compressobj()

    def encode(self, text: str | bytes) -> bytes:
        """Compress one message; the result is one Binary message. The frame is never ended."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        return self._encoder.compress(data) + self._encoder.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
