"""Run a short backtest against the embedded reference server with the plain client."""

import simtrio
import trio
from simtrio.server import serve


async def main() -> None:
    async with serve() as server:
        client = simtrio.BacktestClient(server.url)
        # Slots 1000 through 1010: both ends of a range are inclusive.
        create = simtrio.CreateSession(1000, slot_count=10, send_summary=True)
        async with client.create_session(create) as session:
            await session.ensure_ready()
            while True:
                result = await session.advance(simtrio.Continue(4))
                print("advanced to slot", result.last_slot)
                if result.completed:
                    break
            assert result.summary is not None
            print("correct simulations:", result.summary.correct_simulation)
            await session.close()


if __name__ == "__main__":
    trio.run(main)
