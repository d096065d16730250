"""A standalone data-plane subscription next to a plain-client session."""

import simtrio
import trio
from simtrio import wire
from simtrio.server import serve


async def main() -> None:
    async with serve(seed=5) as server:
        program = server.config.program_ids[0]
        client = simtrio.BacktestClient(server.url, request_timeout=10.0)
        create = simtrio.CreateSession(6000, end_slot=6029)
        async with client.create_session(create) as session:
            assert session.rpc_endpoint is not None
            # The plain client reports the endpoint as the server sent it (often relative).
            endpoint = wire.resolve_rpc_url(
                wire.http_base_from_ws_url(client.url), session.rpc_endpoint
            )
            async with simtrio.open_account_diff_subscription(
                endpoint, [program]
            ) as sub:
                await sub.wait_up()  # subscribed: nothing of the run can be missed now

                async def run_backtest() -> None:
                    await session.ensure_ready()
                    result = await session.advance(simtrio.Continue(30))
                    print("backtest completed:", result.completed)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_backtest)
                    slots: set[int] = set()
                    # The channel ends once the server sent every subscription's terminal.
                    async for diff in sub.notifications:
                        slots.add(diff.notification.context.slot)
                print("diffs from", min(slots), "to", max(slots))
            await session.close()


if __name__ == "__main__":
    trio.run(main)
