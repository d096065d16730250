"""The RPC benchmark runs (quick mode); speed is never asserted here."""

from __future__ import annotations

import trio

from benchmarks import rpc


async def test_quick_rpc_benchmark_measures_both_sides() -> None:
    rates = await rpc._rates(3, 1)  # pyright: ignore[reportPrivateUsage]
    assert set(rates) == {"raw", "SessionRpc"}
    assert all(rate > 0 for rate in rates.values())
    await trio.lowlevel.checkpoint()
