"""The plain client: one WebSocket connection per session, explicit steps, no reconnects.

:class:`BacktestClient` holds configuration only; every ``create_session``,
``attach_session`` and ``create_sessions`` opens its own control connection and hands it to a
:class:`~simtrio.backtest_session.BacktestSession` (protocol §6.1, §6.2, §6.4).
"""

from __future__ import annotations

__all__: list[str] = []

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from simtrio.backtest_session import (
    GRACEFUL_CLOSE_TIMEOUT,
    BacktestSession,
    deadline,
    decode_message,
    log_skipped,
)
from simtrio.core.discovery import RUN_ON_COUNT
from simtrio.errors import ConnectError, InvalidParams, RemoteError, excerpt
from simtrio.params import CreateSession, as_create_request
from simtrio.transport.connection import connect
from simtrio.transport.engine import DEFAULT_MAX_MESSAGE_SIZE
from simtrio.transport.http import http_get
from simtrio.wire import types as wire
from simtrio.wire.codec import decode_available_ranges, encode
from simtrio.wire.redact import redactor_for
from simtrio.wire.urls import API_KEY_HEADER, http_base_from_ws_url, normalize_control_url

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator, Callable

    from simtrio.transport.connection import WebSocketConnection


_BODY_EXCERPT: Final = 200
_FATAL_HTTP: Final = frozenset({401, 403})


class BacktestClient:
    """Configuration for reaching one backtest server; constructing it does no I/O.

    Args:
        url: control URL, normalised as protocol §1.1 says (see :attr:`url`).
        api_key: sent as ``X-API-Key`` on every control upgrade (empty when not given).
        connect_timeout: bound on TCP, TLS and the upgrade together.
        request_timeout: default bound of every waiting call; None means no limit.
        ssl_context: for ``wss://``; the system default when None.
        max_message_size: largest inbound WebSocket message accepted.
    """

    __slots__ = (
        "_api_key",
        "_connect_timeout",
        "_max_message_size",
        "_redactor",
        "_request_timeout",
        "_ssl_context",
        "_url",
    )

    def __init__(
        self,
        url: str,
        api_key: str = "",
        *,
        connect_timeout: float = 10.0,
        request_timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._url = normalize_control_url(url)
        self._api_key = api_key
        self._redactor = redactor_for((api_key,))
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._ssl_context = ssl_context
        self._max_message_size = max_message_size

    def __repr__(self) -> str:
        key = "<set>" if self._api_key else "<none>"
        return f"BacktestClient({self._url!r}, api_key={key})"

    @property
    def url(self) -> str:
        """The normalised control URL."""
        return self._url

    @property
    def connect_timeout(self) -> float:
        return self._connect_timeout

    @property
    def request_timeout(self) -> float | None:
        return self._request_timeout

    # -- sessions -------------------------------------------------------------------------------

    async def _connect(self) -> WebSocketConnection:
        if not self._url.startswith(("ws://", "wss://")):
            raise ConnectError(
                f"cannot connect to {excerpt(self._url)!r}: the control URL must be ws:// or wss://",
                fatal=True,
            )
        return await connect(
            self._url,
            headers=[(API_KEY_HEADER, self._api_key)],
            connect_timeout=self._connect_timeout,
            max_message_size=self._max_message_size,
            ssl_context=self._ssl_context,
        )

    def _session(
        self,
        conn: WebSocketConnection,
        create: wire.CreateBacktestSessionRequest | None = None,
    ) -> BacktestSession:
        return BacktestSession(
            conn,
            self._request_timeout,
            self._redactor,
            rpc_base=http_base_from_ws_url(self._url),
            ssl_context=self._ssl_context,
            run_on_count=(
                RUN_ON_COUNT if create is None else create.end_slot - create.start_slot + 1
            ),
        )

    @asynccontextmanager
    async def create_session(
        self, create: CreateSession | wire.CreateBacktestSessionRequest
    ) -> AsyncGenerator[BacktestSession]:
        """Create a session on a new connection; leaving the block closes the WebSocket only.

        Waits for ``sessionCreated`` at most ``request_timeout``; whatever else arrives first
        is kept for the session's reads. Raises ``ConnectError``, ``RemoteError`` (an
        ``error`` before ``sessionCreated``), ``RequestTimeout``, ``ConnectionClosed``;
        ``InvalidParams`` for a parallel create (use :meth:`create_sessions`).
        """
        request = as_create_request(create)
        if request.parallel:
            raise InvalidParams(
                "create_session cannot make a parallel session; use create_sessions"
            )
        text = encode(request)
        conn = await self._connect()
        try:
            session = self._session(conn, request)
            with deadline(self._request_timeout, "createBacktestSession"):
                await session._handshake(text, wire.SessionCreated)  # pyright: ignore[reportPrivateUsage]
            yield session
        finally:
            await conn.aclose(GRACEFUL_CLOSE_TIMEOUT)

    @asynccontextmanager
    async def attach_session(
        self, session_id: str, last_sequence: int | None = None
    ) -> AsyncGenerator[BacktestSession]:
        """Attach to an existing session on a new connection.

        Numbered frames replayed before ``sessionAttached`` are kept for the session's reads
        and count toward ``last_sequence`` only when read (it starts at None whatever
        ``last_sequence`` was asked for). ``resumeAttachedSession`` is not sent: send it with
        :meth:`BacktestSession.send` once any data-plane subscriptions are back. An unnumbered
        ``error`` raises ``RemoteError``.
        """
        text = encode(wire.AttachBacktestSession(session_id, last_sequence))
        conn = await self._connect()
        try:
            session = self._session(conn)
            with deadline(self._request_timeout, "attachBacktestSession"):
                await session._handshake(text, wire.SessionAttached)  # pyright: ignore[reportPrivateUsage]
            yield session
        finally:
            await conn.aclose(GRACEFUL_CLOSE_TIMEOUT)

    async def create_sessions(
        self,
        create: CreateSession | wire.CreateBacktestSessionRequest,
        on_session_created: Callable[[str], object] | None = None,
    ) -> list[str]:
        """One-shot create (protocol §6.4); returns the session ids and closes the socket.

        ``on_session_created`` gets each streamed ``sessionCreated`` id in arrival order. The
        result is the terminal ``sessionsCreated``/``sessionsCreatedV2`` list when it is not
        empty, else the streamed ids; without ``parallel`` the first ``sessionCreated`` ends
        it. Raises ``RemoteError`` on an ``error``; waits at most ``request_timeout``.
        """
        request = as_create_request(create)
        text = encode(request)
        conn = await self._connect()
        try:
            with deadline(self._request_timeout, "createBacktestSession"):
                await conn.send_text(text)
                streamed: list[str] = []
                while True:
                    for message in await conn.receive_batch():
                        frame = decode_message(message, self._redactor)
                        if frame is None:
                            continue
                        response = frame[1]
                        if isinstance(response, wire.SessionCreated):
                            streamed.append(response.session_id)
                            if on_session_created is not None:
                                on_session_created(response.session_id)
                            if not request.parallel:
                                return streamed
                        elif isinstance(response, wire.SessionsCreated | wire.SessionsCreatedV2):
                            return list(response.session_ids) or streamed
                        elif isinstance(response, wire.Error):
                            raise RemoteError(response.error)
                        else:
                            log_skipped(response, "creating sessions")
        finally:
            await conn.aclose(GRACEFUL_CLOSE_TIMEOUT)

    # -- management -----------------------------------------------------------------------------

    async def available_ranges(self) -> list[wire.AvailableRange]:
        """GET ``<http base>/available-ranges`` (with ``X-API-Key`` when a key is configured).

        Bounded by ``request_timeout``, else ``connect_timeout``. Raises ``ConnectError``
        (carrying the URL, and the status and a body excerpt for a non-2xx reply),
        ``ProtocolError`` for a body that is not a JSON array.
        """
        if not self._url.startswith(("ws://", "wss://")):
            raise ConnectError(
                f"cannot reach {excerpt(self._url)!r}: the control URL must be ws:// or wss://",
                fatal=True,
            )
        url = http_base_from_ws_url(self._url) + "/available-ranges"
        headers = [(API_KEY_HEADER, self._api_key)] if self._api_key else []
        limit = (
            self._request_timeout if self._request_timeout is not None else self._connect_timeout
        )
        status, body = await http_get(
            url, headers=headers, timeout=limit, ssl_context=self._ssl_context
        )
        if not 200 <= status < 300:
            message = f"GET {url} returned HTTP {status}"
            text = (body if self._redactor is None else self._redactor.data(body)).strip()
            if text:
                message += f": {excerpt(text, _BODY_EXCERPT)}"
            raise ConnectError(message, status=status, fatal=status in _FATAL_HTTP)
        return decode_available_ranges(
            body if self._redactor is None else self._redactor.message(body)
        )
