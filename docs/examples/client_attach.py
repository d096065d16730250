"""Leave a session, then attach to it again from where you were (sequencing and cursors)."""

import simtrio
import trio
from simtrio import wire
from simtrio.server import serve


async def main() -> None:
    # deterministic_ids: the same session ids on every run, as printed below.
    async with serve(deterministic_ids=True) as server:
        client = simtrio.BacktestClient(server.url, request_timeout=10.0)
        # A disconnect timeout keeps the session alive (and numbers its responses)
        # while no connection is attached.
        create = simtrio.CreateSession(3000, end_slot=3009, disconnect_timeout_secs=30)
        async with client.create_session(create) as session:
            await session.ensure_ready()
            await session.advance(simtrio.Continue(4))
            session_id = session.session_id
            cursor = session.last_sequence
        # The socket is closed; the session waits on the server.
        print("left", session_id, "at sequence", cursor)

        assert session_id is not None
        async with client.attach_session(session_id, last_sequence=cursor) as session:
            # Only responses numbered above the cursor are replayed; the server re-announces
            # the readiness we already saw, so the driver simply continues.
            await session.send(wire.ResumeAttachedSession())
            await session.ensure_ready()
            result = await session.advance(simtrio.Continue(10))
            print(
                "completed after attach:",
                result.completed,
                "last slot",
                result.last_slot,
            )
            print("last sequence now:", session.last_sequence)
            await session.close()


if __name__ == "__main__":
    trio.run(main)
