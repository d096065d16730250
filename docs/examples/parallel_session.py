"""A parallel backtest: one driver task per sub-session, each with its own subscription."""

import simtrio
import trio
from simtrio import events
from simtrio.server import serve


async def drive(sub: simtrio.ParallelSubSession, results: dict[str, int]) -> None:
    """Continue at every readiness until Completed; count this sub-session's account diffs."""
    diffs = 0
    async for event in sub.events():
        match event:
            case events.ReadyForContinue():
                await sub.send_continue(simtrio.Continue(10))
            case events.AccountDiff(notification=diff):
                diffs += 1
                assert sub.range[0] <= diff.context.slot <= sub.range[1]
            case events.Completed(summary=summary):
                assert summary is not None
                start, end = sub.range
                print(
                    f"{start}-{end}: {summary.correct_simulation} simulated, {diffs} diffs"
                )
    results[sub.session_info.session_id] = diffs


async def main() -> None:
    # deterministic_ids: the same session ids on every run, as printed below.
    async with serve(seed=3, deterministic_ids=True) as server:
        program = server.config.program_ids[0]
        # The reference server splits a parallel range at multiples of 100 slots.
        create = simtrio.CreateSession(
            5000, end_slot=5249, send_summary=True, disconnect_timeout_secs=60
        )
        async with simtrio.open_parallel_session(server.url, "", create) as parallel:
            subs = parallel.take_sub_sessions()
            print(
                "control session:",
                parallel.control_session_id,
                "with",
                len(subs),
                "subs",
            )
            results: dict[str, int] = {}
            async with trio.open_nursery() as nursery:
                for sub in subs:
                    sub.subscribe_account_diffs([program])
                    nursery.start_soon(drive, sub, results)
            # Every driver saw its Completed; leaving the block closes the control connection.
            print("account diffs in total:", sum(results.values()))


if __name__ == "__main__":
    trio.run(main)
