"""The recording format, independent of storage: run ids, entry hashing, payload compression.

Every entry of a run is chained to the one before it: ``hash = sha256(previous hash, seq,
timestamp, plane, kind, session id, topic, payload)``, starting from a genesis hash derived from
the run id. The chain is computed over the *uncompressed* payload, so it proves the content that
was recorded rather than one particular compressed encoding of it. Removing, reordering or
editing any entry breaks the chain from that point on; truncating the tail is caught by the
run's manifest, which stores the head hash and entry count in the same transaction as every
batch.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
import hashlib
import secrets
import struct
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, cast

import zstandard

from simtrio.errors import excerpt

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue

RUN_STARTED: Final = "run.started"
RUN_ENDED: Final = "run.ended"
EVENT_KIND_PREFIX: Final = "event."
"""Kind prefix of a control entry recorded from a driver event rather than a raw frame."""

MAX_PAYLOAD_SIZE: Final = 256 * 1024 * 1024
"""A stored payload that claims to decompress beyond this is treated as corrupt."""

_CHAIN_DOMAIN: Final = b"simtrio-run-chain-v1\x00"
ZSTD_LEVEL: Final = 3
"""The zstd level of stored payloads and of run exports."""
_SUFFIX_BYTES: Final = 3


class RunStatus(enum.StrEnum):
    """Where a run stands. Only RUNNING runs change status, and only once."""

    RUNNING = "RUNNING"
    ENDED = "ENDED"
    """Complete: the last entry is ``run.ended`` and the chain is intact."""
    CRASHED_RECOVERED = "CRASHED_RECOVERED"
    """The recording process died; what was committed is intact but has no ``run.ended``."""
    QUARANTINED = "QUARANTINED"
    """The chain is broken; never used as a parent or replay source."""


class Plane(enum.StrEnum):
    """Which stream an entry belongs to."""

    RUN = "run"
    """``run.started`` / ``run.ended`` markers written by the recorder itself."""
    CONTROL = "control"
    """A control-plane response (or driver event) received by the client."""
    DATA = "data"
    """A data-plane notification or terminal received by the client."""
    SENT = "sent"
    """A control-plane request the client wrote (create, continue, close, ...)."""
    RPC = "rpc"
    """A per-session JSON-RPC call the client made and the answer it got (kind: the method)."""


PLANE_VALUES: Final = frozenset(plane.value for plane in Plane)
"""Every plane's stored name."""


def genesis_hash(run_id: str) -> bytes:
    """The hash the first entry of ``run_id`` is chained to."""
    return hashlib.sha256(_CHAIN_DOMAIN + run_id.encode("utf-8")).digest()


def _text_field(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    data = value.encode("utf-8")
    return b"\x01" + struct.pack(">I", len(data)) + data


def entry_hash(
    previous: bytes,
    *,
    seq: int,
    ts_ns: int,
    plane: str,
    kind: str,
    session_id: str | None,
    topic: str | None,
    payload: bytes,
) -> bytes:
    """The chained hash of one entry (length-prefixed fields, so no two entries collide)."""
    h = hashlib.sha256(previous)
    h.update(struct.pack(">Qq", seq, ts_ns))
    for value in (plane, kind, session_id, topic):
        h.update(_text_field(value))
    h.update(struct.pack(">Q", len(payload)))
    h.update(payload)
    return h.digest()


class _Codecs(threading.local):
    """One zstd compressor and decompressor per thread (building them costs more than a call)."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_codecs = _Codecs()


def compress_payload(payload: bytes) -> bytes:
    """One self-contained zstd frame (content size in the header) per payload."""
    return _codecs.compressor.compress(payload)


def decompress_payload(data: bytes) -> bytes:
    """Inverse of :func:`compress_payload`.

    Raises:
        ValueError: the bytes are not one zstd frame of a plausible size.
    """
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"not a zstd frame ({exc})") from None
    if size < 0 or size > MAX_PAYLOAD_SIZE:
        raise ValueError("zstd frame has no plausible content size")
    try:
        out = _codecs.decompressor.decompress(data, max_output_size=max(size, 1))
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt zstd frame ({exc})") from None
    if len(out) != size:
        raise ValueError("zstd frame decoded to the wrong size")
    return out


def new_run_id(now_ns: int | None = None) -> str:
    """A run id that sorts by start time: ``20250102T030405.123456Z-9f2c1a``."""
    ns = time.time_ns() if now_ns is None else now_ns
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{rest // 1000:06d}Z-{secrets.token_hex(_SUFFIX_BYTES)}"


def format_ns(ns: int | None) -> str | None:
    """An ISO 8601 UTC timestamp (microseconds) for a nanosecond wall-clock value."""
    if ns is None:
        return None
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return moment.isoformat().replace("+00:00", "Z")


def redact_url(url: str | None) -> str | None:
    """The server URL without user info, query or fragment: nowhere for a credential to hide."""
    if url is None:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return excerpt(url.split("?", 1)[0].split("@")[-1])
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def simtrio_version() -> str:
    """The installed simtrio version, or ``"unknown"`` when running from an uninstalled tree."""
    from importlib import metadata

    try:
        return metadata.version("simtrio")
    except metadata.PackageNotFoundError:
        return "unknown"


def json_field(value: JsonValue, key: str) -> JsonValue:
    """``value[key]`` when ``value`` is a JSON object, else None."""
    if isinstance(value, dict):
        return cast("dict[str, JsonValue]", value).get(key)
    return None
