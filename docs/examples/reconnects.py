"""A managed session rides out dropped connections without losing or repeating a control event."""

from typing import Any

import simtrio
import trio
from simtrio import events
from simtrio.server import FaultPlan, Faults, serve

CREATE = simtrio.CreateSession(10_000, end_slot=10_039, disconnect_timeout_secs=60)
CONFIG = simtrio.ManagedConfig(
    backoff=simtrio.BackoffPolicy(initial=0.05, max=1.0),  # quick retries for the demo
    reconnect_max_total=30.0,  # give up after an outage this long
)


def signature(event: events.Transaction) -> str:
    """The first signature of a ``getTransaction``-shaped payload."""
    payload: Any = event.notification.transaction
    return str(payload["transaction"]["signatures"][0])


async def run(faults: FaultPlan) -> tuple[list[events.Event], list[str], int]:
    control: list[events.Event] = []
    signatures: list[str] = []
    async with serve(seed=2, faults=faults) as server:
        program = server.config.program_ids[0]
        async with simtrio.open_managed_session(
            server.url, "", CREATE, config=CONFIG
        ) as s:
            s.subscribe_transactions([program])
            async for event in s.events():
                if isinstance(event, events.Transaction):
                    signatures.append(signature(event))
                    continue
                control.append(event)
                if isinstance(event, events.ReadyForContinue):
                    await s.send_continue(simtrio.Continue(4))
        connections = server.connection_count("control") + server.connection_count(
            "data"
        )
    return control, signatures, connections


async def main() -> None:
    clean_control, clean_signatures, _ = await run(FaultPlan())
    # Drop the first control connection after 25 messages, the first data one after 10.
    faults = FaultPlan(
        control_connections={1: Faults(drop_after=25)},
        data_connections={1: Faults(drop_after=10)},
    )
    control, signatures, connections = await run(faults)
    print("connections opened:", connections)
    print("control events identical to a clean run:", control == clean_control)
    # Data-plane replay is inclusive: the boundary slot may be delivered twice.
    print("duplicate transactions:", len(signatures) - len(set(signatures)))
    print(
        "unique transactions as in a clean run:",
        set(signatures) == set(clean_signatures),
    )


if __name__ == "__main__":
    trio.run(main)
