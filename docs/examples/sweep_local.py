"""A small sweep: two slot ranges times two step sizes, in this process, into one run store."""

import tempfile
from pathlib import Path
from typing import Any

import simtrio
import trio
from simtrio import events
from simtrio.sweep import LocalExecutor, expand_grid, run_sweep


async def strategy(session: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Continue by ``step`` slots at every readiness; count the slots the run went through."""
    slots = 0
    async for event in session.events():
        if isinstance(event, events.ReadyForContinue):
            await session.send_continue(simtrio.Continue(params["step"]))
        elif isinstance(event, events.Slot):
            slots += 1
    return {"slots": slots}


async def main() -> None:
    ranges = [
        simtrio.CreateSession(1000, end_slot=1019),
        simtrio.CreateSession(2000, end_slot=2009),
    ]
    cells = expand_grid(ranges, {"step": [1, 5]})
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "runs.db"
        # No url: an embedded reference server serves the sweep.
        table = await run_sweep(
            cells, strategy, store=store, name="steps", executor=LocalExecutor(4)
        )
        for cell in table.cells:
            print(cell.key, cell.outcome, cell.result)
        # Running the same sweep again skips every cell that already succeeded.
        again = await run_sweep(cells, strategy, store=store, name="steps")
        print(
            "same runs on resume:",
            [c.run_id for c in again.cells] == [c.run_id for c in table.cells],
        )


if __name__ == "__main__":
    trio.run(main)
