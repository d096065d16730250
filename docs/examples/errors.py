"""Every failure surfaces as a simtrio error; the API key never shows up in one."""

import simtrio
import trio
from simtrio import events
from simtrio.server import serve

KEY = "my-secret-key"


async def main() -> None:
    # Invalid parameters fail where they are written, before any I/O.
    try:
        simtrio.CreateSession(100, end_slot=110, slot_count=10)
    except simtrio.InvalidParams as exc:
        print("InvalidParams:", exc)

    async with serve(api_key=KEY) as server:
        # A rejected upgrade: HTTP 401 is fatal, retrying cannot fix it.
        wrong = simtrio.BacktestClient(server.url, "not-the-key")
        try:
            async with wrong.create_session(simtrio.CreateSession(100, end_slot=101)):
                pass
        except simtrio.ConnectError as exc:
            print("ConnectError:", exc, "| status", exc.status, "fatal", exc.fatal)
            print(
                "key in the error or the client:",
                "not-the-key" in f"{exc}{exc!r}{wrong!r}",
            )

        # Managed sessions never raise ConnectError: a create that cannot complete is CreateFailed.
        try:
            async with simtrio.open_managed_session(
                server.url, "not-the-key", simtrio.CreateSession(100, end_slot=101)
            ):
                pass
        except simtrio.CreateFailed as exc:
            print("CreateFailed:", exc)
            print("key in the error:", "not-the-key" in f"{exc}{exc!r}")

        # An error response from the server while a call waits: RemoteError with the error.
        client = simtrio.BacktestClient(server.url, KEY, request_timeout=10.0)
        async with client.create_session(
            simtrio.CreateSession(100, end_slot=101)
        ) as session:
            await session.ensure_ready()
            await session.advance(simtrio.Continue(2))  # runs to completed
            try:
                await session.advance(simtrio.Continue(1))
            except simtrio.RemoteError as exc:
                print(
                    "RemoteError:", exc.error.kind, "terminal:", exc.error.is_terminal
                )
            await session.close()

        # After Completed, a managed session's event stream is closed.
        create = simtrio.CreateSession(100, end_slot=101)
        async with simtrio.open_managed_session(server.url, KEY, create) as managed:
            async for event in managed.events():
                if isinstance(event, events.ReadyForContinue):
                    await managed.send_continue(simtrio.Continue(2))
            try:
                await managed.next_event()
            except simtrio.ControlClosed:
                print("ControlClosed after Completed")

    # A refused connection (the server is gone): ConnectError, not fatal.
    # SimtrioError, the base class, catches everything simtrio raises.
    try:
        async with client.create_session(simtrio.CreateSession(100, end_slot=101)):
            pass
    except simtrio.SimtrioError as exc:
        print(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    trio.run(main)
