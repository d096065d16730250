"""Benchmark 3: K sub-sessions on one control connection (memory, event latency, round trips).

The server stamps every slot notification with its ``time.monotonic_ns()`` (one clock for
every process on the machine), so a driver's receive time minus the slot is the event latency
from the server's send to the driver. Every sub-session's driver continues as soon as it is
ready, all at once, so the round trip includes queueing behind the other sub-sessions.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import trio

from benchmarks.clients import bench_config
from benchmarks.common import write_result

LIMIT = 30.0
TODO_NOTE = "TODO: no numbers: open_parallel_session"


def _pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1e3  # microseconds


async def _memory(url: str, k: int) -> float:
    """Traced bytes per sub-session once every sub-session is created and ready."""
    from benchmarks.server import FIRST_SLOT
    from simtrio import events
    from simtrio.managed.parallel import open_parallel_session
    from simtrio.params import CreateSession

    async def until_ready(sub: Any) -> None:
        while not isinstance(await sub.next_event(), events.ReadyForContinue):
            pass

    create = CreateSession(FIRST_SLOT, slot_count=1000, parallel=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with trio.fail_after(LIMIT):
            async with open_parallel_session(
                url, "bench-key", create, config=bench_config()
            ) as session:
                async with trio.open_nursery() as nursery:
                    for sub in session.take_sub_sessions():
                        nursery.start_soon(until_ready, sub)
                used = tracemalloc.get_traced_memory()[0] - before
        return used / k
    finally:
        tracemalloc.stop()


async def _latency(url: str, k: int) -> dict[str, Any]:
    from benchmarks.server import FIRST_SLOT
    from simtrio import events
    from simtrio.managed.parallel import open_parallel_session
    from simtrio.params import Continue, CreateSession

    latencies: list[int] = []
    round_trips: list[int] = []
    one = Continue(1)

    async def drive(sub: Any) -> None:
        sent: int | None = None
        async for event in sub.events():
            now = time.monotonic_ns()
            if isinstance(event, events.Slot):
                latencies.append(now - event.slot)
            elif isinstance(event, events.ReadyForContinue):
                if sent is not None:
                    round_trips.append(now - sent)
                sent = time.monotonic_ns()
                await sub.send_continue(one)
            elif isinstance(event, events.Completed):
                return

    create = CreateSession(FIRST_SLOT, slot_count=1000, parallel=True)
    start = time.perf_counter()
    with trio.fail_after(LIMIT):
        async with (
            open_parallel_session(url, "bench-key", create, config=bench_config()) as session,
            trio.open_nursery() as nursery,
        ):
            for sub in session.take_sub_sessions():
                nursery.start_soon(drive, sub)
    elapsed = time.perf_counter() - start
    return {
        "events": len(latencies),
        "event_latency_us_p50": _pct(latencies, 0.5),
        "event_latency_us_p99": _pct(latencies, 0.99),
        "continue_rtt_us_p50": _pct(round_trips, 0.5),
        "continue_rtt_us_p99": _pct(round_trips, 0.99),
        "continues_per_s": len(round_trips) / elapsed if elapsed else float("nan"),
    }


def run(port: int, *, quick: bool) -> dict[str, Any]:
    ks = [1, 10, 100] if quick else [1, 10, 100, 1000]
    budget = 600 if quick else 20_000
    records: list[dict[str, Any]] = []
    print("\n## scale: K sub-sessions on one control connection (open_parallel_session)")
    head = (
        f"{'K':>6}{'rounds':>8}{'KiB/sub':>10}{'event p50 us':>14}{'event p99 us':>14}"
        f"{'rtt p50 us':>12}{'rtt p99 us':>12}{'continues/s':>13}"
    )
    print(head)
    print("-" * len(head))
    for k in ks:
        rounds = max(3, budget // k)
        url = f"ws://127.0.0.1:{port}/prtt/{k}/{rounds}/backtest"
        record: dict[str, Any] = {"sub_sessions": k, "rounds": rounds}
        global LIMIT
        LIMIT = 8.0 if quick else 15.0
        try:
            record["bytes_per_sub_session"] = round(trio.run(_memory, url, k))
        except Exception as exc:
            record["note"] = f"{TODO_NOTE} setup failed: {type(exc).__name__}: {exc}"[:200]
        try:
            record.update(trio.run(_latency, url, k))
        except trio.TooSlowError:
            record["note"] = (
                f"{TODO_NOTE} drivers stalled (no readyForContinue after a continue) "
                f"within {LIMIT:g} s"
            )
        except Exception as exc:
            record["note"] = f"{TODO_NOTE} failed: {type(exc).__name__}: {exc}"[:200]
        records.append(record)
        nan = float("nan")
        print(
            f"{k:>6}{rounds:>8}{record.get('bytes_per_sub_session', nan) / 1024:>10.1f}"
            f"{record.get('event_latency_us_p50', nan):>14.0f}"
            f"{record.get('event_latency_us_p99', nan):>14.0f}"
            f"{record.get('continue_rtt_us_p50', nan):>12.0f}"
            f"{record.get('continue_rtt_us_p99', nan):>12.0f}"
            f"{record.get('continues_per_s', nan):>13,.0f}"
            + (f"  {record['note']}" if "note" in record else "")
        )
    path = write_result("scale", {"ks": ks, "continue_budget": budget}, {"scale": records}, quick)
    print(f"-> {path.relative_to(path.parent.parent.parent)}")
    return {"scale": records}
