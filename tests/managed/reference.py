"""A session on the embedded reference server, for standalone subscriptions to attach to."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from simtrio.server import serve
from tests.server import helpers

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from simtrio.server import ReferenceServer
    from tests.server.helpers import WsClient


@asynccontextmanager
async def reference_session(
    start: int, end: int, **overrides: Any
) -> AsyncGenerator[tuple[ReferenceServer, WsClient, str]]:
    """A running server (``overrides`` replace its config fields), a control connection with a
    session for ``[start, end]`` that survives a minute without it, and the session's data-plane
    endpoint."""
    async with serve(**overrides) as server, helpers.connect(server) as control:
        session_id = await helpers.open_session(
            control, helpers.create(start, end, disconnectTimeoutSecs=60)
        )
        yield server, control, f"{server.http_url}/backtest/{session_id}"
