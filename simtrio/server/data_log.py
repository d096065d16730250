"""A session's data log: the data-plane events it retains, and the subscriptions reading them.

Events of the last ``retained_slots`` slots (fewer when they count for more than
``retained_bytes``) are kept, bucketed by (kind, program); each subscription is a cursor into
one bucket, and data connections stream from the log the same way control connections stream
from the response log.
"""

from __future__ import annotations

__all__: list[str] = []

from collections import deque
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import attrs

from simtrio.server.broadcast import Signal
from simtrio.wire.rpc import (
    AccountDiffNotification,
    TransactionNotification,
)
from simtrio.wire.rpc_server import encode_rpc

if TYPE_CHECKING:
    from collections.abc import Callable

    from simtrio.server.conn import Conn

DataKind: TypeAlias = Literal["account", "transaction"]
BucketKey: TypeAlias = tuple[DataKind, str]
Notification: TypeAlias = AccountDiffNotification | TransactionNotification

_SUBSCRIPTION_SLOT: Final = '"params":{"subscription":0,'


class LazyNotification:
    """A notification built and encoded on first use, then shared.

    Most events are never sent (nobody subscribed to that program), so payloads are not
    built at execution time. The text is encoded once with subscription 0 and the id is
    patched in per subscription; one transaction's events for several programs share it.

    A transaction's event also carries its ``logsNotification`` (``logs``): a logs
    subscription is a view of the transaction stream of the same program, so the data log
    holds one event for both.
    """

    __slots__ = ("_build", "_logs", "_logs_text", "_text")

    def __init__(
        self, build: Callable[[], Notification], logs: Callable[[], str] | None = None
    ) -> None:
        self._build: Callable[[], Notification] | None = build
        self._text: str | None = None
        self._logs = logs
        self._logs_text: str | None = None

    def text_for(self, subscription: int, logs: bool = False) -> str:
        if logs:
            text = self._logs_text
            if text is None:
                assert self._logs is not None, "a logs subscription reads transaction events"
                text = self._logs_text = self._logs()
                self._logs = None
        else:
            text = self._text
            if text is None:
                assert self._build is not None
                text = self._text = encode_rpc(self._build())
                self._build = None
        if subscription == 0:
            return text
        return text.replace(
            _SUBSCRIPTION_SLOT, '"params":{"subscription":' + str(subscription) + ",", 1
        )


@attrs.frozen
class DataEvent:
    """One data-plane event; ``index`` orders events across buckets (execution order)."""

    index: int
    slot: int
    notification: LazyNotification
    size: int
    """Bytes it counts for against ``retained_bytes``."""


class _Bucket:
    __slots__ = ("base", "entries")

    def __init__(self, base: int = 0) -> None:
        self.base = base
        self.entries: deque[DataEvent] = deque()

    @property
    def end(self) -> int:
        return self.base + len(self.entries)

    def get(self, position: int) -> DataEvent | None:
        offset = position - self.base
        return self.entries[offset] if 0 <= offset < len(self.entries) else None

    def first_at_or_after(self, slot: int) -> int:
        for offset, event in enumerate(self.entries):
            if event.slot >= slot:
                return self.base + offset
        return self.end


class Subscription:
    """One data-plane subscription: a cursor into one bucket of a session's data log."""

    __slots__ = ("complete", "conn", "id", "key", "logs", "overtaken", "position")

    def __init__(
        self, sub_id: int, key: BucketKey, position: int, conn: Conn, *, logs: bool = False
    ) -> None:
        self.id = sub_id
        self.key = key
        self.position = position
        self.conn = conn
        self.complete = False
        self.logs = logs
        """Sends the transactions' ``logsNotification`` instead (``logsSubscribe``)."""
        self.overtaken = False
        """Events it was owed left the retained window before it could send them."""

    def peek(self, log: DataLog) -> DataEvent | None:
        """The next event owed; events trimmed meanwhile (while the subscription was not
        live) are skipped, and ``overtaken`` says so."""
        bucket = log.bucket(self.key)
        if self.position < bucket.base:
            self.overtaken = True
            self.position = bucket.base
        return bucket.get(self.position)

    @property
    def live(self) -> bool:
        """Counts for back-pressure and retention (a stalled connection does not)."""
        return not self.complete and not self.conn.stalled and not self.conn.gone


class DataLog:
    """A session's data-plane events, bucketed by (kind, program id)."""

    def __init__(self) -> None:
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._next_index = 0
        self.bytes = 0
        """What the retained events count for (``DataEvent.size``)."""
        self._slot_bytes: dict[int, int] = {}
        """The same by slot, oldest first (events are appended in slot order)."""
        self.cut_below = 0
        """Events of slots below this may be gone before ``retained_slots`` ran out (the byte
        bound dropped them): a replay from there cannot be complete."""
        self.subs: set[Subscription] = set()
        self.signal = Signal()

    def bucket(self, key: BucketKey) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            # Numbered from the event count, so a bucket made again after being dropped
            # starts above any position handed out for its earlier life.
            bucket = self._buckets[key] = _Bucket(self._next_index)
        return bucket

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    def append(self, key: BucketKey, slot: int, notification: LazyNotification, size: int) -> None:
        self.bucket(key).entries.append(DataEvent(self._next_index, slot, notification, size))
        self._next_index += 1
        self.bytes += size
        self._slot_bytes[slot] = self._slot_bytes.get(slot, 0) + size

    def slot_bytes(self, slot: int) -> int:
        """What the retained events of ``slot`` count for."""
        return self._slot_bytes.get(slot, 0)

    def byte_floor(self, limit: int) -> int | None:
        """The oldest slot to keep so that the retained events fit in ``limit`` bytes.

        Whole slots are dropped, oldest first, and the newest slot is always kept, however
        large; None when nothing is retained.
        """
        total = self.bytes
        remaining = len(self._slot_bytes)
        for slot, size in self._slot_bytes.items():
            if total <= limit or remaining == 1:
                return slot
            total -= size
            remaining -= 1
        return None

    def start_position(self, key: BucketKey, from_slot: int) -> int:
        """Where a subscription starting at ``from_slot`` begins (oldest retained if older)."""
        return self.bucket(key).first_at_or_after(from_slot)

    def end_position(self, key: BucketKey) -> int:
        return self.bucket(key).end

    def trim(self, min_slot: int) -> None:
        """Drop events of slots below ``min_slot`` that no live subscription still needs."""
        floors: dict[BucketKey, int] = {}
        watched: set[BucketKey] = set()
        for sub in self.subs:
            watched.add(sub.key)
            if sub.live:
                floors[sub.key] = min(floors.get(sub.key, sub.position), sub.position)
        empty: list[BucketKey] = []
        for key, bucket in self._buckets.items():
            floor = floors.get(key, bucket.end)
            entries = bucket.entries
            while entries and entries[0].slot < min_slot and bucket.base < floor:
                event = entries.popleft()
                bucket.base += 1
                self._forget(event)
            if not entries and key not in watched:
                empty.append(key)
        # User transactions can mention any address: keep no bucket nobody needs.
        for key in empty:
            del self._buckets[key]

    def _forget(self, event: DataEvent) -> None:
        self.bytes -= event.size
        left = self._slot_bytes[event.slot] - event.size
        if left:
            self._slot_bytes[event.slot] = left
        else:
            del self._slot_bytes[event.slot]

    def lagging(self, min_slot: int) -> bool:
        """True while a live subscription still owes events of a slot below ``min_slot``."""
        for sub in self.subs:
            if sub.live:
                event = sub.peek(self)
                if event is not None and event.slot < min_slot:
                    return True
        return False
