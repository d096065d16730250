"""The shared fake server set up for the subscription tests, plus a few checks of it.

Each accepted connection runs a test-supplied script against a :class:`FakeConn` (the shared
:class:`~tests.support.fakeserver.FakeConnection`): exact Text frames in and out,
zstd-compressed Binary notifications from a per-connection stream, abrupt drops and stalls.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import trio

from simtrio.managed.session_subscriptions import SessionSubscriptions
from simtrio.wire.compression import ZstdStreamEncoder
from tests.support.fakeserver import (
    ACCOUNT,
    FakeConnection,
    FakeServer,
    Reject,
    Script,
    complete_text,
    diff_text,
    serving,
    tx_text,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from simtrio.managed.config import ManagedConfig
    from simtrio.managed.coordinator import ReconnectCoordinator
    from simtrio.managed.streams import EventStream

__all__ = [
    "ACCOUNT",
    "ATOKEN",
    "RPC_VECTORS",
    "TOKEN",
    "FakeConn",
    "FakeServer",
    "closed_port",
    "complete_text",
    "diff_text",
    "fake_server",
    "running_subscriptions",
    "slots_of",
    "tx_text",
]

TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATOKEN = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"

_VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "rpc.json"
RPC_VECTORS: dict[str, str] = {
    entry["name"]: entry["json"]
    for entry in json.loads(_VECTORS.read_text(encoding="utf-8"))
    if entry["direction"] == "to_server"
}


FakeConn = FakeConnection
"""The server side of one accepted data-plane connection (the shared fake's connection)."""


@asynccontextmanager
async def fake_server(
    script: Script, *, reject: Reject | None = None, tcp: bool = False
) -> AsyncGenerator[FakeServer]:
    """The shared fake for data-plane tests: ``script`` runs on every accepted upgrade.

    A connection is numbered by accepts (refused upgrades do not count); when its script
    returns, the fake records until the client leaves, unless the script dropped it.
    """
    server = FakeServer(
        lambda _, __: script, reject=reject, reject_body=None, then="hold", index="accepted"
    )
    async with serving(server, tcp=tcp):
        yield server


async def closed_port() -> int:
    """A local port with nothing listening (connections are refused)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


def slots_of(items: list[Any]) -> list[int]:
    return [item.notification.slot for item in items]


# -- checks of the harness itself -----------------------------------------------------------


async def test_compressed_frames_share_one_stream() -> None:
    conn_encoder = ZstdStreamEncoder()
    first = conn_encoder.encode(diff_text(1, 4000))
    second = conn_encoder.encode(diff_text(1, 4001))
    assert len(second) < len(first)


def test_vectors_loaded() -> None:
    assert orjson.loads(RPC_VECTORS["account_diff_subscribe_first_connection"])["id"] == 1


@asynccontextmanager
async def running_subscriptions(
    url: str,
    stream: EventStream,
    *,
    config: ManagedConfig,
    start_slot: int | None = None,
    coordinator: ReconnectCoordinator | None = None,
    **options: Any,
) -> AsyncGenerator[SessionSubscriptions]:
    """One session's subscriptions with their service running for the block.

    On leaving, no further subscription is taken and the block waits until the running ones
    have ended, as a nursery waits for its tasks.
    """
    subs = SessionSubscriptions(
        rpc_endpoint=url,
        start_slot=start_slot,
        stream=stream,
        config=config,
        coordinator=coordinator,
        **options,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(subs.run)
        yield subs
        subs.close_requests()
