"""A managed session: an event loop over one backtest, with a data-plane subscription."""

import simtrio
import trio
from simtrio import events
from simtrio.server import serve


async def main() -> None:
    async with serve(seed=7) as server:
        program = server.config.program_ids[0]
        create = simtrio.CreateSession(
            4000, end_slot=4019, send_summary=True, disconnect_timeout_secs=60
        )
        async with simtrio.open_managed_session(server.url, "", create) as session:
            print("session:", session.session_info.session_id)
            session.subscribe_transactions([program])
            transactions = 0
            async for event in session.events():
                match event:
                    case events.ReadyForContinue():
                        await session.send_continue(simtrio.Continue(5))
                    case events.Slot(slot=slot) if slot % 10 == 0:
                        print("slot", slot)
                    case events.Transaction():
                        transactions += 1
                    case events.ErrorEvent(error=error):
                        print("server error:", error.kind)
                    case events.Completed(summary=summary):
                        assert summary is not None
                        print("completed:", summary.correct_simulation, "simulated")
            # events() ended after Completed; every drained transaction came before it.
            print("transactions:", transactions)


if __name__ == "__main__":
    trio.run(main)
