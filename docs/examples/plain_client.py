"""The plain client: explicit steps on one connection, raw responses when you need them."""

import simtrio
import trio
from simtrio import wire
from simtrio.server import serve


async def main() -> None:
    async with serve() as server:
        client = simtrio.BacktestClient(server.url, request_timeout=10.0)
        create = simtrio.CreateSession(2000, end_slot=2005, send_summary=True)
        async with client.create_session(create) as session:
            print("session:", session.session_id, "endpoint:", session.rpc_endpoint)

            # Wait for the first readyForContinue (statuses before it are skipped).
            outcome = await session.ensure_ready()
            print("ready:", outcome is simtrio.ReadyOutcome.READY)

            # advance() counts slots; on_response sees every response of the step.
            seen: list[str] = []
            result = await session.advance(
                simtrio.Continue(3), on_response=lambda r: seen.append(type(r).__name__)
            )
            print("step:", result.slot_notifications, "slots, last", result.last_slot)
            print("responses:", ", ".join(seen))

            # Raw access: send a request yourself and read responses one by one.
            await session.send(simtrio.Continue(10))
            while True:
                response = await session.next_response(timeout=5.0)
                if isinstance(response, wire.Completed):
                    print("completed, summary:", response.summary is not None)
                    break

            # Explicit server-side close (leaving the block alone only closes the socket).
            await session.close()


if __name__ == "__main__":
    trio.run(main)
