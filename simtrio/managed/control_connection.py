"""One control connection: decoding what it reads, and what happened to it.

:func:`decode_batch` turns one read's messages into frames (protocol §2.4); a
:class:`ConnectionRun` records the first outcome of one connection (lost, failed, closing) and
cancels the connection's tasks when one is recorded; :func:`keepalive` and :func:`watch_steps`
are two of those tasks, which declare a silent connection lost. The control loop
(:mod:`simtrio.managed.control`) owns the connection and its tasks.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
import math
from typing import TYPE_CHECKING, Final, TypeAlias

import trio

from simtrio.errors import ConnectionClosed, ProtocolError
from simtrio.managed.waiting import ReadPause
from simtrio.wire.codec import decode_frame

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simtrio.core.backoff import ReconnectState
    from simtrio.core.phase import ControlCore
    from simtrio.errors import ConnectError, ManagedSessionError
    from simtrio.managed.config import ManagedConfig
    from simtrio.transport.connection import WebSocketConnection
    from simtrio.wire.redact import Redactor
    from simtrio.wire.types import BacktestResponse

logger = logging.getLogger(__name__)

DECODE_CHUNK: Final = 64
"""Most messages of one read decoded and routed together."""


Frame: TypeAlias = tuple[int | None, "BacktestResponse"]
"""A decoded control frame: its ``seqId`` (None when unnumbered) and its response."""

ContinueItem: TypeAlias = tuple[str | None, str]
"""A queued continue: the sub-session id (None for a single session) and the encoded request."""


def decode_batch(
    messages: Sequence[str | bytes], redactor: Redactor | None = None
) -> tuple[list[Frame], ProtocolError | None]:
    """Decode every message of one read, stopping at the first malformed one (protocol §2.4).

    A Binary message that is valid UTF-8 is decoded like Text; one that is not is skipped with a
    warning (§1.7). The frames before a malformed one are returned together with its error, so
    the caller can process them before it drops the connection. With a ``redactor``, the API
    key is taken out of each message before it is decoded.
    """
    frames: list[Frame] = []
    append = frames.append
    for message in messages:
        try:
            append(decode_frame(message if redactor is None else redactor.message(message)))
        except ProtocolError as exc:
            if isinstance(message, bytes) and not _is_utf8(message):
                logger.warning("ignoring a Binary control message that is not UTF-8")
                continue
            return frames, exc
    return frames, None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class ConnectionRun:
    """What happened to one control connection; the first outcome recorded wins.

    ``loss`` (reconnect), ``failure`` (stop for good) and ``closing`` (an orderly end) each
    cancel ``scope``, the cancel scope of the connection's tasks (set by the task that opens
    them). ``came_up`` is set once the connection is UP: the tasks that only run then wait
    for it; ``attached`` once a handshake re-attached the session, which the control loop
    then brings UP.
    """

    __slots__ = (
        "attached",
        "came_up",
        "close_done",
        "closing",
        "conn",
        "failure",
        "handshake_done",
        "loss",
        "read_pause",
        "reads",
        "scope",
        "stalled_since",
        "up",
        "written_at",
    )

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self.scope: trio.CancelScope | None = None
        self.came_up = trio.Event()
        self.attached = trio.Event()
        """Set when the handshake re-attached the session: it comes UP once resumed."""
        self.loss: str | None = None
        self.failure: ManagedSessionError | None = None
        self.closing = False
        self.handshake_done = False
        self.up = False
        self.close_done = False
        self.read_pause = ReadPause()
        """The pump waits for the recorder's disk, so silence on the socket is not the peer's."""
        self.reads = 0
        """Reads that brought control frames (a cheap progress mark for the idle-step watch)."""
        self.stalled_since: float | None = None
        """For a loss declared on silence: when the connection stopped making progress."""
        self.written_at = -math.inf
        """When the last batch of continues began to be written on this connection."""

    @property
    def stopped(self) -> bool:
        """Lost or failed: frames still arriving on it are no longer processed."""
        return self.loss is not None or self.failure is not None

    @property
    def over(self) -> bool:
        """Stopped, or closing in order: the pump reads no further frames."""
        return self.closing or self.stopped

    def lose(self, reason: str, *, stalled_since: float | None = None) -> None:
        """The connection is lost (reconnect), unless an outcome was recorded already.

        ``stalled_since``: the loss is a silence that began then; the connection counts as
        healthy only until that moment (see ``ReconnectState.connection_lost``).
        """
        if not self.over:
            self.loss = reason
            self.stalled_since = stalled_since
            logger.warning("control connection lost: %s", reason)
        self._cancel()

    def fail(self, error: ManagedSessionError) -> None:
        """Stop for good with ``error``, unless already lost or failed (it overrides a close)."""
        if not self.stopped:
            self.failure = error
        self._cancel()

    def close(self) -> None:
        """End the connection in order, unless it is already lost, failed or closing."""
        if not self.over:
            self.closing = True
        self._cancel()

    def _cancel(self) -> None:
        if self.scope is not None:
            self.scope.cancel()


def give_up_message(state: ReconnectState, config: ManagedConfig, last_error: str | None) -> str:
    """Why the control loop stops reconnecting, with the last connection error if any."""
    budget = state.budget
    if state.gave_up and config.backoff.max_retries is not None:
        head = f"gave up after {config.backoff.max_retries} failed reconnect attempts"
    elif budget is not None:
        head = f"no usable control connection within {budget:g} s"
    else:
        head = "gave up reconnecting"
    return f"{head} (last error: {last_error})" if last_error else head


class GiveUp(Exception):
    """No further connection attempt (budget spent, or a fatal connect error)."""

    def __init__(self, message: str, cause: ConnectError | None = None) -> None:
        super().__init__(message)
        self.cause = cause


async def keepalive(run: ConnectionRun, config: ManagedConfig) -> None:
    """Ping every interval (the first at once); a silent peer is a lost connection."""
    conn = run.conn
    interval = config.keepalive_interval
    deadline = config.keepalive_miss_deadline
    while True:
        silent = trio.current_time() - max(conn.last_received, run.read_pause.ended_at)
        if silent >= deadline and not run.read_pause.active:
            run.lose(
                f"nothing received for {silent:g} s (keepalive)",
                stalled_since=trio.current_time() - silent,
            )
            return
        with trio.move_on_after(deadline) as scope:
            try:
                await conn.ping()
            except ConnectionClosed as exc:
                run.lose(str(exc))
                return
        if scope.cancelled_caught:
            run.lose("a keepalive Ping could not be sent")
            return
        await trio.sleep(interval)


async def watch_steps(run: ConnectionRun, limit: float, core: ControlCore) -> None:
    """The idle-step detector: a connection silent while a step is unanswered is lost.

    A peer that answers Pings (so the keepalive is satisfied) but sends no frame for
    ``limit`` seconds while a written continue waits for its readiness event is treated
    as a lost connection: the loop re-attaches, and the readiness rule of protocol §6.8
    re-announces a continue the server never got. Pongs are not progress; waiting for the
    recorder's disk is not silence. Checked every quarter of ``limit``, from the last read
    that brought frames, so a stall is declared between ``limit`` and 1.25 x ``limit``.
    """
    tick = limit / 4
    await run.came_up.wait()
    reads = run.reads
    quiet_since = trio.current_time()
    while True:
        await trio.sleep(tick)
        now = trio.current_time()
        if run.reads != reads or run.read_pause.active or not core.step_outstanding:
            reads = run.reads
            quiet_since = now
            continue
        quiet_since = max(quiet_since, run.written_at)
        if now - quiet_since >= limit:
            run.lose(
                f"no reply to an outstanding step for {now - quiet_since:g} s"
                " though the server answers Pings (idle step)",
                stalled_since=quiet_since,
            )
            return
