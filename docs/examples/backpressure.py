"""A slow consumer slows its own subscription down; nothing is dropped."""

import simtrio
import trio
from simtrio import wire
from simtrio.server import serve


async def count_diffs(
    server_url: str, program: str, *, buffer: int, pause: float
) -> int:
    client = simtrio.BacktestClient(server_url, request_timeout=30.0)
    config = simtrio.ManagedConfig(event_buffer=buffer)
    async with client.create_session(
        simtrio.CreateSession(9000, end_slot=9049)
    ) as session:
        assert session.rpc_endpoint is not None
        endpoint = wire.resolve_rpc_url(
            wire.http_base_from_ws_url(client.url), session.rpc_endpoint
        )
        async with simtrio.open_account_diff_subscription(
            endpoint, [program], config=config
        ) as sub:
            await sub.wait_up()
            received = 0
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    await session.ensure_ready()
                    await session.advance(simtrio.Continue(50))

                nursery.start_soon(run)
                async for _diff in sub.notifications:
                    received += 1
                    await trio.sleep(pause)  # a slow consumer
        await session.close()
    return received


async def main() -> None:
    async with serve(seed=9, max_transactions_per_slot=8) as server:
        program = server.config.program_ids[0]
        fast = await count_diffs(server.url, program, buffer=1024, pause=0)
        slow = await count_diffs(server.url, program, buffer=4, pause=0.001)
        print(
            "fast consumer:", fast, "diffs; slow consumer with a 4-slot buffer:", slow
        )
        print("nothing dropped:", fast == slow)


if __name__ == "__main__":
    trio.run(main)
