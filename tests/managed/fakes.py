"""The shared fake server set up for the managed-session tests, and frame builders.

:mod:`tests.support.fakeserver` runs a test-supplied async script for every accepted WebSocket
connection, recording everything the client sent. Scripts see exact text frames: they receive
requests, send canonical responses (built with the helpers below or written by hand), drop the
connection abruptly, stall it (no reads, no writes, no Pongs, connection kept open) or close
it with a Close frame.

Control connections (path ``/backtest``) take their script from ``control``: a sequence is
used one script per connection in order (connections past its end are refused with HTTP 503),
a single callable serves every connection. Any other path is a data-plane connection and runs
``data`` (refused with 404 when there is none). ``reject`` may refuse an upgrade by index.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from simtrio import wire
from simtrio.managed.control import ControlLoop
from simtrio.wire.codec import encode, encode_response
from tests.support.fakeserver import (
    CONTROL_PATH,
    ClientGone,
    FakeConnection,
    FakeServer,
    Reject,
    Script,
    hold,
    serving,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from simtrio.managed.config import ConnectionStatus
    from simtrio.managed.parallel import ParallelSession
    from simtrio.managed.session import ManagedSession

__all__ = [
    "ClientGone",
    "FakeConnection",
    "FakeServer",
    "Script",
    "control_of",
    "event",
    "fake_server",
    "frame",
    "hold",
    "request",
    "status_of",
]


def frame(response: wire.BacktestResponse, seq: int | None = None) -> str:
    """The canonical text of a response, numbered when ``seq`` is given."""
    return encode_response(response, seq)


def event(session_id: str, seq: int, inner: wire.SessionEvent) -> str:
    """The canonical text of a ``sessionEventV2`` frame."""
    return encode_response(wire.SessionEventV2(session_id, seq, inner))


def request(req: wire.BacktestRequest) -> str:
    """The exact text simtrio sends for a request."""
    return encode(req)


def control_of(session: object) -> ControlLoop:
    """The control loop behind a managed or parallel session (to wait for its end in tests)."""
    control = session._control  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    assert isinstance(control, ControlLoop)
    return control


def status_of(session: ManagedSession | ParallelSession) -> ConnectionStatus:
    """``connection_status`` read through a call, so type checkers do not narrow it."""
    return session.connection_status


@asynccontextmanager
async def fake_server(
    control: Sequence[Script] | Script = (),
    *,
    data: Script | None = None,
    reject: Reject | None = None,
    script_timeout: float = 30.0,
    tcp: bool = False,
) -> AsyncGenerator[FakeServer]:
    """Run the shared fake for the duration of the block, set up as the module docstring says.

    Every script runs under ``trio.fail_after(script_timeout)``; an assertion failing inside a
    script fails the test. Leaving the block cancels whatever still runs.
    """

    def script_for(path: str, index: int) -> Script | None:
        if path != CONTROL_PATH:
            return data
        if callable(control):
            return control
        return control[index - 1] if index <= len(control) else None

    server = FakeServer(script_for, reject=reject, script_timeout=script_timeout)
    async with serving(server, tcp=tcp):
        yield server
