"""Builders for what the scripted fake data-plane servers expect and answer."""

from __future__ import annotations

from typing import Any

import orjson

from tests.managed.test_subscriptions_harness import RPC_VECTORS, TOKEN, FakeConn

BOTH_PROGRAMS = (
    RPC_VECTORS["account_diff_subscribe_first_connection"],
    RPC_VECTORS["account_diff_subscribe_second_program"],
)
"""The two account-diff subscribe requests (``TOKEN``, then ``ATOKEN``) of a first connection."""


def subscribe_request(
    program: str = TOKEN,
    *,
    request_id: int = 1,
    replay: int | None = None,
    method: str = "accountDiffSubscribe",
) -> str:
    """The exact text of a subscribe request, replaying from ``replay`` when one is given."""
    config: dict[str, Any] = {"compression": "zstd"}
    if replay is not None:
        config["replayFromSlot"] = replay
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": [program, config]}
    ).decode()


def resubscribe(slot: int, program: str = TOKEN, method: str = "accountDiffSubscribe") -> str:
    """A first request on a new connection that replays from ``slot``."""
    return subscribe_request(program, replay=slot, method=method)


async def accept(conn: FakeConn, *requests: str) -> None:
    """Expect each request in turn and acknowledge it with the subscription of its position.

    The first request is answered as request 1 with subscription 1, the second as 2 with 2.
    """
    for number, request in enumerate(requests, start=1):
        await conn.expect(request)
        await conn.ack(number, number)
