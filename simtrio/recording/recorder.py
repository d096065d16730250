"""The trio side of recording: accept entries without touching disk, commit them in batches.

``record_*`` calls encode the item (microseconds) and append it to an in-memory buffer; a writer
task hands batches to a worker thread, which compresses, chains and commits them. The event loop
never waits for disk, except when the buffer is over ``max_pending`` (back-pressure: the
``record_*`` coroutine then waits for the writer, nothing is dropped) and on ``flush()``.

A writer failure is final: the writer task raises :class:`RecordingFailed`, which cancels the
body of ``open_recorder``'s block and is raised from it; every later ``record_*`` call and
``flush()`` raise the same error. The run stays RUNNING on disk and the next open of the store
recovers what was committed.

Usage: hand the recorder to a managed session, which records everything it writes and reads::

    async with open_recorder("runs.db", create_params=create, server_url=url,
                             secrets=[api_key]) as recorder:
        async with open_managed_session(url, api_key, create, recorder=recorder) as session:
            ...

or record by hand::

        await recorder.record_sent(None, create.to_request())        # each request written
        await recorder.record_control(session_id, response, seq_id=seq)  # each frame received
        await recorder.record_notification(session_id, diff, program_id=program)  # data plane
"""

from __future__ import annotations

__all__: list[str] = []

import logging
import math
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import orjson
import trio

from simtrio import events
from simtrio.core.groups import only, unwrapped
from simtrio.errors import InvalidParams, SimtrioError
from simtrio.params import CreateSession
from simtrio.recording.errors import RecordingClosed, RecordingFailed, StoreError
from simtrio.recording.format import RUN_ENDED, Plane, json_field, simtrio_version
from simtrio.recording.records import ActiveRun, PendingEntry
from simtrio.recording.store import RunStore
from simtrio.recording.wireform import (
    ControlItem,
    NotificationItem,
    SentItem,
    control_form,
    notification_form,
    rpc_form,
    sent_form,
)
from simtrio.wire import codec
from simtrio.wire.redact import REDACTED

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncGenerator, Iterable, Sequence
    from pathlib import Path

    from simtrio.errors import RpcError
    from simtrio.wire.jsontext import JsonValue
    from simtrio.wire.types import CreateBacktestSessionRequest

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL: Final = 0.1
"""Seconds an entry may wait in memory before its batch is committed."""
DEFAULT_FLUSH_SIZE: Final = 512
"""A batch is committed as soon as this many entries are waiting."""
DEFAULT_MAX_PENDING: Final = 65_536
"""Entries not yet durable beyond which ``record_*`` coroutines wait for the writer."""

_MAX_BATCH: Final = 8192
_REDACTED_BYTES: Final = REDACTED.encode()


class Recorder:
    """Records one run. Obtain it from :func:`open_recorder`; use it from trio tasks only."""

    def __init__(
        self,
        store: RunStore,
        run: ActiveRun,
        *,
        flush_interval: float,
        flush_size: int,
        max_pending: int,
        secrets: Sequence[bytes],
    ) -> None:
        self._store = store
        self._run = run
        self._flush_interval = flush_interval
        self._flush_size = flush_size
        self._max_pending = max_pending
        self._secrets: tuple[bytes, ...] = tuple(secrets)
        self._pending: list[PendingEntry] = []
        self._next_seq = run.next_seq
        self._durable = run.next_seq - 1
        self._first_pending_at = 0.0
        self._flush_requested = False
        self._kick = trio.Event()
        self._progress = trio.Event()
        self._write_lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)
        self._failure: RecordingFailed | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Recorder run={self.run_id} entries={self.entries_recorded}>"

    # -- public state ----------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """Sortable id of the run being recorded."""
        return self._run.run_id

    @property
    def path(self) -> Path:
        """The store file."""
        return self._store.path

    @property
    def entries_recorded(self) -> int:
        """Entries accepted so far, ``run.started`` included."""
        return self._next_seq - 1

    @property
    def entries_durable(self) -> int:
        """Entries committed to disk so far."""
        return self._durable

    @property
    def failure(self) -> RecordingFailed | None:
        """The writer's failure, once it has failed."""
        return self._failure

    # -- recording -------------------------------------------------------------------------

    async def record_control(
        self, session_id: str | None, item: ControlItem, *, seq_id: int | None = None
    ) -> None:
        """Record a control frame as received (pass its ``seqId``) or a driver event.

        Returns at once unless too many entries wait for the disk.

        Raises:
            RecordingFailed: the writer has failed.
            RecordingClosed: the recorder's block has ended.
            InvalidParams: ``item`` is not a control response or event.
        """
        self.record_control_nowait(session_id, item, seq_id=seq_id)
        await self._backpressure()

    async def record_notification(
        self, session_id: str | None, item: NotificationItem, *, program_id: str | None = None
    ) -> None:
        """Record a data-plane notification or terminal; ``program_id`` is its subscription's."""
        self.record_notification_nowait(session_id, item, program_id=program_id)
        await self._backpressure()

    async def record_sent(self, session_id: str | None, request: SentItem) -> None:
        """Record a control request when it is written to the connection (replay checks them)."""
        self.record_sent_nowait(session_id, request)
        await self._backpressure()

    async def record_event(
        self, session_id: str | None, event: events.Event, *, program_id: str | None = None
    ) -> None:
        """Record a driver event: notifications go to the data plane, the rest to control."""
        self.record_event_nowait(session_id, event, program_id=program_id)
        await self._backpressure()

    def record_event_nowait(
        self, session_id: str | None, event: events.Event, *, program_id: str | None = None
    ) -> None:
        """Synchronous :meth:`record_event`."""
        if isinstance(event, events.AccountDiff | events.Transaction):
            self.record_notification_nowait(session_id, event, program_id=program_id)
        elif isinstance(event, events.ProgramLogs):
            self.record_notification_nowait(
                session_id, event, program_id=program_id or event.program_id
            )
        else:
            self.record_control_nowait(session_id, event)

    def record_control_nowait(
        self, session_id: str | None, item: ControlItem, *, seq_id: int | None = None
    ) -> None:
        """Synchronous :meth:`record_control`: never waits (and so applies no back-pressure)."""
        self._check_open()
        session, kind, text = control_form(session_id, item, seq_id)
        self._enqueue(Plane.CONTROL, kind, session, None, text)

    def record_notification_nowait(
        self, session_id: str | None, item: NotificationItem, *, program_id: str | None = None
    ) -> None:
        """Synchronous :meth:`record_notification`."""
        self._check_open()
        kind, text, _slot = notification_form(item)
        self._enqueue(Plane.DATA, kind, session_id, program_id, text)

    def record_rpc_nowait(
        self,
        session_id: str | None,
        method: str,
        params: JsonValue,
        result: JsonValue,
        error: RpcError | None = None,
    ) -> None:
        """Record one answered per-session JSON-RPC call (a replay answers it from this)."""
        self._check_open()
        kind, text = rpc_form(method, params, result, error)
        self._enqueue(Plane.RPC, kind, session_id, None, text)

    def record_sent_nowait(self, session_id: str | None, request: SentItem) -> None:
        """Synchronous :meth:`record_sent`."""
        self._check_open()
        session, kind, text = sent_form(session_id, request)
        self._enqueue(Plane.SENT, kind, session, None, text)

    async def wait_for_room(self) -> None:
        """Wait while more than ``max_pending`` entries wait for the disk.

        What every async ``record_*`` call does after queueing its entry; a caller that queues
        a batch with the ``*_nowait`` calls awaits this once afterwards. Returns at once (no
        checkpoint) when there is room.

        Raises:
            RecordingFailed: the writer has failed.
        """
        await self._backpressure()

    def failure_from(self, exc: SimtrioError) -> RecordingFailed:
        """``exc``, raised by a ``record_*`` call, as the :class:`RecordingFailed` a session
        stopped by it raises (``exc`` itself if it is one already)."""
        if isinstance(exc, RecordingFailed):
            return exc
        failure = RecordingFailed(
            f"recording of run {self.run_id} failed ({type(exc).__name__}: {exc})",
            durable=self.entries_durable,
        )
        failure.__cause__ = exc
        return failure

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also redact these strings (an API key) from every entry committed from now on."""
        extra = tuple(s.encode() for s in secrets if s)
        new = tuple(s for s in extra if s not in self._secrets)
        if new:
            # One assignment: the writer thread sees the old tuple or the new one, never a mix.
            self._secrets = (*self._secrets, *new)

    async def flush(self) -> None:
        """Wait until every entry recorded so far is committed.

        Raises:
            RecordingFailed: the writer has failed.
        """
        target = self._next_seq - 1
        while self._durable < target:
            self._raise_if_failed()
            self._flush_requested = True
            self._kick.set()
            await self._progress.wait()
        self._raise_if_failed()

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        self._raise_if_failed()
        if self._closed:
            raise RecordingClosed(f"run {self.run_id} has ended; nothing more can be recorded")

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _enqueue(
        self, plane: Plane, kind: str, session_id: str | None, topic: str | None, text: str
    ) -> None:
        seq = self._next_seq
        self._next_seq += 1
        entry = PendingEntry(seq, time.time_ns(), plane, kind, session_id, topic, text.encode())
        self._pending.append(entry)
        waiting = len(self._pending)
        if waiting == 1:
            self._first_pending_at = trio.current_time()
            self._kick.set()
        elif waiting >= self._flush_size:
            self._kick.set()

    async def _backpressure(self) -> None:
        while self._next_seq - 1 - self._durable > self._max_pending:
            self._raise_if_failed()
            await self._progress.wait()

    async def _wait_for_work(self) -> None:
        while not self._pending:
            await self._kick.wait()
            self._kick = trio.Event()
        with trio.move_on_at(self._first_pending_at + self._flush_interval):
            while len(self._pending) < self._flush_size and not self._flush_requested:
                await self._kick.wait()
                self._kick = trio.Event()

    async def _writer_loop(self) -> None:
        while True:
            await self._wait_for_work()
            async with self._write_lock:
                await self._write_pending()

    async def _write_pending(self) -> None:
        """Commit what is waiting, one batch per thread call (caller holds the write lock)."""
        while self._pending:
            batch = self._pending[:_MAX_BATCH]
            del self._pending[:_MAX_BATCH]
            if self._pending:
                self._first_pending_at = trio.current_time()
            else:
                self._flush_requested = False
            try:
                await trio.to_thread.run_sync(self._write_batch, batch, limiter=self._limiter)
            except trio.Cancelled:
                # Cancelled before the thread started: nothing was written, keep the batch.
                self._pending[:0] = batch
                raise
            except Exception as exc:
                raise self._fail(exc, batch) from None
            # No checkpoint between the thread's return and this update (see Cancelled above).
            self._durable = batch[-1].seq
            self._progress.set()
            self._progress = trio.Event()

    def _write_batch(self, batch: list[PendingEntry]) -> None:
        """Runs in a worker thread: redact, then compress, chain and commit."""
        secrets = self._secrets
        if secrets:
            batch = [_redact(entry, secrets) for entry in batch]
        outcome = None
        if batch[-1].kind == RUN_ENDED and batch[-1].plane is Plane.RUN:
            ended: JsonValue = orjson.loads(batch[-1].payload)
            outcome = json_field(ended, "outcome")
        self._store.append(self._run, batch, outcome=outcome if isinstance(outcome, str) else None)

    def _fail(self, exc: Exception, batch: list[PendingEntry]) -> RecordingFailed:
        unwritten = len(batch) + len(self._pending)
        reason = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
        self._failure = RecordingFailed(
            f"recording of run {self.run_id} failed ({reason}); {self._durable} entries are "
            f"durable, {unwritten} could not be written",
            durable=self._durable,
            unwritten=unwritten,
        )
        self._pending[:0] = batch
        logger.error("%s", self._failure)
        self._progress.set()
        self._kick.set()
        return self._failure

    async def _finish(self, outcome: str, error: str | None) -> None:
        """Record ``run.ended`` and commit everything; shielded, so a cancelled run still ends."""
        with trio.CancelScope(shield=True):
            if self._closed:
                return
            self._closed = True
            try:
                if self._failure is None:
                    payload = {
                        "outcome": outcome,
                        "error": error,
                        "entries": self._next_seq,
                    }
                    self._enqueue(Plane.RUN, RUN_ENDED, None, None, orjson.dumps(payload).decode())
                    async with self._write_lock:
                        await self._write_pending()
            finally:
                if self._failure is not None:
                    await trio.to_thread.run_sync(self._stop_failed, self._failure)
                await trio.to_thread.run_sync(self._store.release, self._run)

    def _stop_failed(self, failure: RecordingFailed) -> None:
        """Worker thread: close a run the writer gave up on as an error, not as a crash."""
        try:
            self._store.stop_run(self._run, problem=str(failure))
        except StoreError as exc:
            logger.error(
                "run %s could not be closed as failed (%s); the next open of the store closes "
                "it as crashed",
                self.run_id,
                exc,
            )


def _redact(entry: PendingEntry, secrets: Sequence[bytes]) -> PendingEntry:
    payload = entry.payload
    for secret in secrets:
        if secret in payload:
            logger.warning("a recorded %s entry contained a secret; it was redacted", entry.kind)
            payload = payload.replace(secret, _REDACTED_BYTES)
    if payload is entry.payload:
        return entry
    return PendingEntry(
        entry.seq, entry.ts_ns, entry.plane, entry.kind, entry.session_id, entry.topic, payload
    )


def _create_text(
    create: CreateSession | CreateBacktestSessionRequest | str | None,
) -> str | None:
    if create is None or isinstance(create, str):
        return create
    request = create.to_request() if isinstance(create, CreateSession) else create
    return codec.encode(request)


def _scrub(text: str | None, secrets: Sequence[str]) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _outcome(exc: BaseException | None) -> tuple[str, str | None]:
    if exc is None:
        return "completed", None
    if only(exc, trio.Cancelled):
        return "cancelled", None
    return "error", type(exc).__name__


@asynccontextmanager
async def open_recorder(
    path: str | os.PathLike[str],
    *,
    create_params: CreateSession | CreateBacktestSessionRequest | str | None,
    server_url: str | None,
    parent_run_id: str | None = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    flush_size: int = DEFAULT_FLUSH_SIZE,
    max_pending: int = DEFAULT_MAX_PENDING,
    secrets: Iterable[str] = (),
) -> AsyncGenerator[Recorder]:
    """Record one run into the store at ``path`` for the duration of the block.

    The store is opened (created if needed, recovery sweep included) and ``run.started`` is
    committed before the block starts. Leaving the block records ``run.ended`` (with outcome
    ``completed``, ``error`` or ``cancelled``), commits everything and marks the run ENDED.

    Args:
        create_params: the create request (its canonical text goes into the manifest).
        server_url: stored without user info or query string.
        parent_run_id: lineage; a quarantined parent is refused (``RunUnusable``).
        flush_interval: longest time (seconds) an entry waits in memory before a commit.
        flush_size: entries that trigger a commit at once.
        max_pending: entries not yet durable beyond which ``record_*`` coroutines wait.
        secrets: strings (the API key) that must never reach the file: replaced in payloads.

    Raises:
        StoreError: the store cannot be opened or the run cannot be started.
        RecordingFailed: entries could not be committed (also cancels the block's body).
    """
    if math.isnan(flush_interval) or flush_interval < 0:
        raise InvalidParams("flush_interval must be >= 0")
    if flush_size < 1 or max_pending < 1:
        raise InvalidParams("flush_size and max_pending must be positive")
    secret_texts = tuple(s for s in secrets if s)
    create_text = _scrub(_create_text(create_params), secret_texts)
    server_url = _scrub(server_url, secret_texts)
    version = simtrio_version()
    secret_bytes = tuple(s.encode() for s in secret_texts)

    def start() -> tuple[RunStore, ActiveRun]:
        store = RunStore.open(path)
        try:
            run = store.begin_run(
                create_request=create_text,
                server_url=server_url,
                simtrio_version=version,
                parent_run_id=parent_run_id,
            )
        except BaseException:
            store.close()
            raise
        return store, run

    store, run = await trio.to_thread.run_sync(start)
    recorder = Recorder(
        store,
        run,
        flush_interval=flush_interval,
        flush_size=flush_size,
        max_pending=max_pending,
        secrets=secret_bytes,
    )
    body_error: BaseException | None = None
    try:
        # What leaves is the one error that matters: a recording failure first (it is why the
        # body was cancelled, or what its record calls raised), else the lone exception.
        with unwrapped(prefer=RecordingFailed, ignoring=BaseException):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(recorder._writer_loop)  # pyright: ignore[reportPrivateUsage]
                try:
                    yield recorder
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    outcome, error = _outcome(body_error)
                    try:
                        await recorder._finish(outcome, error)  # pyright: ignore[reportPrivateUsage]
                    except RecordingFailed:
                        if body_error is None:
                            raise
                        logger.error("run %s could not be ended cleanly", recorder.run_id)
                    finally:
                        nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(store.close)
