"""What a managed session records, and the recorder it records with.

Managed sessions depend only on :class:`Recorder`, a protocol defined here:
:class:`simtrio.recording.Recorder` satisfies it structurally, and so can a test double.
:class:`RecordingTap` wraps one recorder for one session and turns a recording error into a
stop of the whole session, raised when its block is left.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from typing import TYPE_CHECKING, Protocol, TypeAlias

from simtrio.errors import SimtrioError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    import trio

    from simtrio.errors import RpcError
    from simtrio.managed.control_connection import Frame
    from simtrio.managed.subscription_kinds import Notification
    from simtrio.rpc.session import RpcObserver
    from simtrio.wire.jsontext import JsonValue
    from simtrio.wire.types import BacktestRequest, BacktestResponse

logger = logging.getLogger(__name__)

NotificationRecorder: TypeAlias = "Callable[[Notification, str], Awaitable[None]]"
"""Called with each notification and its subscription's program id once it was handed over."""


class Recorder(Protocol):
    """What a managed session needs of a recorder (see :func:`simtrio.recording.open_recorder`).

    The ``*_nowait`` calls queue an entry without a checkpoint; :meth:`wait_for_room` applies
    back-pressure once per batch. Each raises a :class:`~simtrio.errors.SimtrioError` once the
    recorder has failed; :meth:`failure_from` turns such an error into the one the session
    raises.
    """

    def add_secrets(self, secrets: Iterable[str], /) -> None: ...

    def record_control_nowait(
        self, session_id: str | None, item: BacktestResponse, /, *, seq_id: int | None = None
    ) -> None: ...

    def record_sent_nowait(
        self, session_id: str | None, request: BacktestRequest | str, /
    ) -> None: ...

    def record_notification_nowait(
        self, session_id: str | None, item: Notification, /, *, program_id: str | None = None
    ) -> None: ...

    def record_rpc_nowait(
        self,
        session_id: str | None,
        method: str,
        params: JsonValue,
        result: JsonValue,
        error: RpcError | None = None,
        /,
    ) -> None: ...

    async def wait_for_room(self) -> None: ...

    def failure_from(self, exc: SimtrioError, /) -> SimtrioError: ...


class RecordingTap:
    """A managed session's recorder, and the first error it raised.

    Entries are queued with the recorder's synchronous calls, so recording an item never adds
    a checkpoint between what was seen and what the core did with it; back-pressure is applied
    once per read (:meth:`wait_for_room`). A recording error never travels between tasks as an
    exception: the first one is kept, the session's nursery (``scope``) is cancelled, and the
    session raises it, alone, when its block is left (:meth:`check`).
    """

    __slots__ = ("failure", "recorder", "scope")

    def __init__(self, recorder: Recorder, api_key: str) -> None:
        self.recorder = recorder
        self.failure: SimtrioError | None = None
        self.scope: trio.CancelScope | None = None
        recorder.add_secrets((api_key,))

    def __repr__(self) -> str:
        return f"<RecordingTap {self.recorder!r} failed={self.failure is not None}>"

    def frames(self, session_id: str | None, frames: Sequence[Frame]) -> None:
        """Record control frames as decoded (``session_id`` None: taken from the frame)."""
        if self.failure is not None:
            return
        record = self.recorder.record_control_nowait
        try:
            for seq, response in frames:
                record(session_id, response, seq_id=seq)
        except SimtrioError as exc:
            self.fail(exc)

    def sent(self, session_id: str | None, request: BacktestRequest | str) -> None:
        """Record a request as its write begins."""
        if self.failure is not None:
            return
        try:
            self.recorder.record_sent_nowait(session_id, request)
        except SimtrioError as exc:
            self.fail(exc)

    def notifications_of(self, session_id: str) -> NotificationRecorder:
        """What a (sub-)session's subscriptions call after handing a notification over."""
        record = self.recorder.record_notification_nowait

        async def notification(message: Notification, program_id: str) -> None:
            if self.failure is not None:
                return
            try:
                record(session_id, message, program_id=program_id)
            except SimtrioError as exc:
                self.fail(exc)
                return
            await self.wait_for_room()

        return notification

    def rpc_observer(self, session_id: str) -> RpcObserver:
        """What a (sub-)session's ``SessionRpc`` calls with every answered call."""
        record = self.recorder.record_rpc_nowait

        def exchange(
            method: str, params: JsonValue, result: JsonValue, error: RpcError | None
        ) -> None:
            if self.failure is not None:
                return
            try:
                record(session_id, method, params, result, error)
            except SimtrioError as exc:
                self.fail(exc)

        return exchange

    async def wait_for_room(self) -> None:
        """Back-pressure: wait while too many entries wait for the disk."""
        try:
            await self.recorder.wait_for_room()
        except SimtrioError as exc:
            self.fail(exc)

    def fail(self, exc: SimtrioError) -> None:
        """Keep the first error (as the recorder's failure) and stop the whole session."""
        if self.failure is None:
            self.failure = self.recorder.failure_from(exc)
            logger.error("the session is stopped because recording failed: %s", self.failure)
        if self.scope is not None:
            self.scope.cancel()

    def check(self) -> None:
        """Raise the recording failure, if there was one."""
        failure = self.failure
        if failure is not None:
            raise failure
