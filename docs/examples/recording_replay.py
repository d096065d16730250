"""Record a managed run, then replay it offline and check the strategy sees the same events."""

import tempfile
from pathlib import Path

import simtrio
import trio
from simtrio import events
from simtrio.recording import Recorder, get_run, open_recorder, replay_server
from simtrio.server import serve

CREATE = simtrio.CreateSession(
    7000, end_slot=7011, send_summary=True, disconnect_timeout_secs=60
)
PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


async def strategy(
    url: str, recorder: Recorder | None = None
) -> tuple[list[events.Event], list[events.Event]]:
    """Continue by three slots at every readiness; the session records itself if asked to."""
    control: list[events.Event] = []
    diffs: list[events.Event] = []
    async with simtrio.open_managed_session(
        url, "", CREATE, recorder=recorder
    ) as session:
        session.subscribe_account_diffs([PROGRAM])
        async for event in session.events():
            if isinstance(event, events.AccountDiff):
                diffs.append(event)
                continue
            control.append(event)
            if isinstance(event, events.ReadyForContinue):
                await session.send_continue(simtrio.Continue(3))
    return control, diffs


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "runs.db"

        # 1. Record a live run (here against the embedded server).
        async with (
            serve(program_ids=(PROGRAM,)) as server,
            open_recorder(store, create_params=CREATE, server_url=server.url) as rec,
        ):
            live = await strategy(server.url, rec)
        run = get_run(store, rec.run_id)
        print("recorded", run.run_id, run.status.name, run.entry_count, "entries")

        # 2. Replay it: no simulator needed, the same requests get the same answers.
        async with replay_server(store, rec.run_id) as replay:
            replayed = await strategy(replay.url)
        print("same events on replay:", replayed == live)


if __name__ == "__main__":
    trio.run(main)
