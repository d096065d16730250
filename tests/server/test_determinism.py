"""Identical inputs give byte-identical output, whatever the timing; and the layering holds."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
import trio

from simtrio.server import serve

from .helpers import (
    ATOKEN,
    TOKEN,
    ZstdReader,
    collect_binary_until_terminals,
    connect,
    cont,
    create,
    subscribe,
)


async def _transcript(seed: int) -> list[str | bytes]:
    out: list[str | bytes] = []
    async with (
        serve(seed=seed, failure_rate=0.2, mismatch_rate=0.3, deterministic_ids=True) as server,
        connect(server) as control,
    ):
        frame = create(
            4000, 4012, sendSummary=True, disconnectTimeoutSecs=10,
            discoveries=[{"ProgramExecuted": ATOKEN}],
        )  # fmt: skip
        await control.send(frame)
        out += await control.recv_until(lambda t: "discoveryBatch" in t)
        session_id = orjson.loads(out[0])["params"]["session_id"]
        async with connect(server, f"/backtest/{session_id}") as data:
            await data.send(subscribe(1, TOKEN, compression=True))
            await data.send(subscribe(2, ATOKEN, method="accountDiffSubscribe", compression=True))
            out.append(await data.recv())
            out.append(await data.recv())
            await control.send(cont(5))
            out += await control.recv_until(lambda t: "discoveryBatch" in t)
            await control.send(cont(20))
            out += await control.recv_until(lambda t: "completed" in t)
            await collect_binary_until_terminals(data, 2, out)
    return out


def _inflate(messages: list[str | bytes]) -> bytes:
    reader = ZstdReader()
    return b"".join(reader.decode(m).encode() for m in messages if isinstance(m, bytes))


async def test_two_runs_are_byte_identical() -> None:
    with trio.fail_after(10):
        first = await _transcript(77)
        second = await _transcript(77)
        other = await _transcript(78)
    assert first == second
    assert len(first) > 20
    assert first != other
    assert b"transactionNotification" in _inflate(first)


def test_server_uses_only_the_wire_layer_of_simtrio() -> None:
    package = Path(__file__).resolve().parents[2] / "simtrio" / "server"
    # No client state machine; the exception-group helpers, the exception-mapping context
    # manager and the scoped context variable are plain code, shared.
    allowed = (
        "simtrio.wire",
        "simtrio.errors",
        "simtrio.server",
        "simtrio.core.groups",
        "simtrio.core.boundary",
        "simtrio.core.scoped",
    )
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("simtrio"):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
