"""Per-call deadlines on the plain client; configured bounds on a managed session."""

import simtrio
import trio
from simtrio import events
from simtrio.server import serve


async def main() -> None:
    async with serve() as server:
        # Plain client: connect_timeout bounds each connection attempt, request_timeout is
        # the default bound of every waiting call; a per-call timeout overrides it.
        client = simtrio.BacktestClient(
            server.url, connect_timeout=5.0, request_timeout=10.0
        )
        async with client.create_session(
            simtrio.CreateSession(8000, end_slot=8003)
        ) as session:
            await session.ensure_ready()
            try:
                # bundleReady came before readiness; it will not come again.
                await session.wait_for_status("bundleReady", timeout=0.2)
            except simtrio.RequestTimeout as exc:
                print(
                    "RequestTimeout:",
                    exc,
                    "| a TimeoutError too:",
                    isinstance(exc, TimeoutError),
                )
            await session.close()

        # Managed session: every bound lives in ManagedConfig; bound the driver yourself.
        config = simtrio.ManagedConfig(
            connect_timeout=5.0,
            handshake_timeout=20.0,
            create_response_timeout=120.0,
            graceful_close_timeout=2.0,
        )
        create = simtrio.CreateSession(8000, end_slot=8009, disconnect_timeout_secs=60)
        with trio.fail_after(30):  # the whole run, whatever the server does
            async with simtrio.open_managed_session(
                server.url, "", create, config=config
            ) as s:
                s.set_completion_drain_timeout(10.0)
                async for event in s.events():
                    if isinstance(event, events.ReadyForContinue):
                        await s.send_continue(simtrio.Continue(5))
                    elif isinstance(event, events.Completed):
                        print("managed run completed within its bounds")


if __name__ == "__main__":
    trio.run(main)
