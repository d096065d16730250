"""Step latency of a managed session with a subscription, with and without the data barrier.

``python -m benchmarks.step_latency [--slots N] [--rounds R]``

Against the embedded reference server on 127.0.0.1 (same process, real sockets), a managed
session steps ``Continue(1)`` through ``--slots`` slots; a step's latency is the time from
``send_continue`` to the next ``ReadyForContinue``. Every round runs each mode once, in turn,
so that the modes share the machine's conditions:

* ``no subscription``: the control plane alone;
* ``subscription, no barrier``: a transaction subscription with the barrier pushed out of reach
  (a window of a billion slots: no probe is ever due, no continue ever held), which is what the
  client did before the barrier existed;
* ``subscription, barrier``: the defaults (a probe every 25 slots, a continue held only past
  50 slots of lag);
* ``subscription, probe every step``: a window of 1 slot, the worst case: a Ping per step and
  a continue held until the Pong of the step before.

Prints the median and the 99th percentile per mode, over all rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import trio

import simtrio.server
from simtrio import events
from simtrio.managed.config import ManagedConfig
from simtrio.managed.session import open_managed_session
from simtrio.params import Continue, CreateSession

KEY = "bench-key"
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"

MODES: dict[str, ManagedConfig | None] = {
    "no subscription": None,
    "subscription, no barrier": ManagedConfig(
        data_lag_window=10**9, server_retained_slots=10**9 + 1
    ),
    "subscription, barrier": ManagedConfig(),
    "subscription, probe every step": ManagedConfig(data_lag_window=1),
}


async def one_run(url: str, slots: int, config: ManagedConfig | None) -> tuple[list[float], int]:
    """Latencies (seconds) of every step, and the notifications received."""
    create = CreateSession(10_000, end_slot=10_000 + slots - 1, disconnect_timeout_secs=60)
    latencies: list[float] = []
    notifications = 0
    sent_at: float | None = None
    async with open_managed_session(url, KEY, create, config=config or ManagedConfig()) as session:
        if config is not None:
            session.subscribe_transactions([TOKEN])
        async for event in session.events():
            if isinstance(event, events.ReadyForContinue):
                if sent_at is not None:
                    latencies.append(time.perf_counter() - sent_at)
                sent_at = time.perf_counter()
                await session.send_continue(Continue(1))
            elif isinstance(event, events.Transaction):
                notifications += 1
            elif isinstance(event, events.Completed) and sent_at is not None:
                latencies.append(time.perf_counter() - sent_at)
    return latencies, notifications


async def main_async(slots: int, rounds: int) -> None:
    results: dict[str, list[float]] = {name: [] for name in MODES}
    counts: dict[str, int] = dict.fromkeys(MODES, 0)
    async with simtrio.server.serve(api_key=KEY) as server:
        for _ in range(rounds):
            for name, config in MODES.items():
                latencies, notifications = await one_run(server.url, slots, config)
                results[name].extend(latencies)
                counts[name] += notifications
    print(f"step latency, Continue(1) x {slots} slots x {rounds} rounds (microseconds)")
    print(f"{'mode':<34} {'steps':>6} {'median':>8} {'p99':>8} {'notifications':>14}")
    for name, values in results.items():
        values.sort()
        median = statistics.median(values) * 1e6
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))] * 1e6
        print(f"{name:<34} {len(values):>6} {median:>8.0f} {p99:>8.0f} {counts[name]:>14}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_latency", description=__doc__)
    parser.add_argument("--slots", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    trio.run(main_async, args.slots, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
