"""Strategies the sweep tests run; module level, so worker processes and Ray can import them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import trio

from simtrio.sweep.strategies import stepping

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue

PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


async def counting(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """The stepping driver with a transaction subscription, plus the parameters echoed."""
    result = await stepping(
        session, {**params, "subscribe": ["transactions"], "program_ids": [PROGRAM]}
    )
    assert isinstance(result, dict)
    return {**result, "echo": params.get("tag")}


async def failing_on(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """Raises for the cell whose ``fail`` parameter is true, steps the others."""
    if params.get("fail"):
        raise ValueError("this cell is meant to fail")
    return await stepping(session, params)


async def flaky(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """Fails until the marker file named by ``marker`` exists; creates it on the first call."""
    marker = params["marker"]
    assert isinstance(marker, str)
    path = trio.Path(marker)
    if not await path.exists():
        await path.write_text("1")
        raise RuntimeError("first attempt fails")
    return await stepping(session, params)


async def leaky(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """Puts the worker's API key into an error message (which must come out redacted)."""
    raise RuntimeError(f"the key is {os.environ.get('SIMULATOR_API_KEY')}")


async def not_json(session: Any, params: dict[str, JsonValue]) -> Any:
    return {"value": object()}


async def first_step_then_wait(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """Steps normally unless ``block`` is set; then it waits until cancelled."""
    if not params.get("block"):
        return await stepping(session, params)
    await trio.sleep_forever()
    return None


async def whereabouts(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """The process and session the cell ran in (and a short backtest stepped)."""
    await stepping(session, params)
    return {"pid": os.getpid(), "sid": os.getsid(0)}
