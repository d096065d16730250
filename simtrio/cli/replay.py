"""``simtrio replay``: serve a recorded run as a backtest server until Ctrl-C.

It prints the control URL on stdout once listening and, on stderr, the ``simtrio run`` command
that repeats the recorded run against it (range, parallelism, step, subscriptions and the
programs they were for, all read from the recording). Each client that connects after the
previous one has left gets the run from the start. A client whose requests differ from the
recording gets an error; the divergences are listed when the server stops (exit 1).
"""

from __future__ import annotations

__all__: list[str] = []

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import trio

from simtrio.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandInfo,
    Interrupt,
    UsageError,
    simtrio_error_of,
)
from simtrio.core.groups import find_leaf
from simtrio.errors import SimtrioError
from simtrio.wire import types

if TYPE_CHECKING:
    import argparse

    from simtrio.recording.replay import ReplayServer
    from simtrio.recording.script import ReplayScript

_KINDS = {"transactionNotification": "transactions", "accountDiffNotification": "account-diffs"}


INFO: Final = CommandInfo(
    name="replay",
    help="serve a recorded run until Ctrl-C",
    description=(
        "Prints the control URL on stdout once listening, and the simtrio run command that "
        "repeats the recorded run on stderr. Exit status: 0, 1 if a client diverged from "
        "the recording, 2 if the run cannot be read."
    ),
)
"""The command's name and what ``--help`` says of it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", type=Path)
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")


def _step(script: ReplayScript) -> int | None:
    from simtrio.recording.script import Expect

    for track in script.tracks.values():
        for item in track.items:
            if not isinstance(item, Expect):
                continue
            request = item.request
            if isinstance(request, types.ContinueSessionRequestV1):
                return request.request.advance_count
            if isinstance(request, types.ContinueParams):
                return request.advance_count
    return None


def replay_command(script: ReplayScript, url: str) -> str:
    """The ``simtrio run`` command line that sends what the recorded client sent."""
    from simtrio.recording.script import DataItem

    create = script.create
    argv = ["simtrio", "run", "--url", url]
    argv += ["--start-slot", str(create.start_slot), "--end-slot", str(create.end_slot)]
    if not script.parallel:
        argv.append("--no-parallel")
    step = _step(script)
    if step is not None and step != 1:
        argv += ["--step", str(step)]
    if create.extra_compute_units is not None:
        argv += ["--extra-compute-units", str(create.extra_compute_units)]
    kinds: dict[str, None] = {}
    programs: dict[str, None] = {}
    for track in script.tracks.values():
        for item in track.items:
            if isinstance(item, DataItem):
                kinds.setdefault(_KINDS.get(item.kind, item.kind))
                if item.topic is not None:
                    programs.setdefault(item.topic)
    if kinds:
        argv += ["--subscriptions", ",".join(kinds)]
        for program in programs:
            argv += ["--program-id", program]
    return " ".join(argv)


async def replay_forever(
    db: Path,
    run_id: str,
    host: str,
    port: int,
    out: TextIO,
    divergences: list[str],
    *,
    hint: TextIO | None = None,
    task_status: trio.TaskStatus[ReplayServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, printing the control URL; divergences are appended on the way out.

    ``hint`` gets the ``simtrio run`` command that repeats the recorded run.
    """
    from simtrio.recording.reader import load_replay_script
    from simtrio.recording.replay import replay_server

    async with replay_server(
        db, run_id, host=host, port=port, raise_on_divergence=False, repeat=True
    ) as server:
        out.write(f"{server.control_url}\n")
        out.flush()
        if hint is not None:
            script = await trio.to_thread.run_sync(load_replay_script, db, run_id)
            hint.write(
                f"simtrio replay: repeat the run with: {replay_command(script, server.control_url)}\n"
            )
            hint.flush()
        task_status.started(server)
        try:
            await trio.sleep_forever()
        finally:
            divergences.extend(str(d) for d in server.divergences)


async def _main(args: argparse.Namespace, divergences: list[str]) -> None:
    interrupt = Interrupt()
    async with trio.open_nursery() as nursery:
        await nursery.start(interrupt.watch)
        with interrupt.hard:
            await replay_forever(
                args.db,
                args.run_id,
                args.host,
                args.port,
                sys.stdout,
                divergences,
                hint=sys.stderr,
            )
        nursery.cancel_scope.cancel()


def _check_run(db: Path, run_id: str) -> str | None:
    """Why the run cannot be served, or None."""
    from simtrio.recording.store import RunStore

    if not db.is_file():
        return f"no run store at {db}"
    try:
        with RunStore.open(db, create=False) as store:
            store.get_run(run_id)
    except SimtrioError as exc:
        return str(exc)
    return None


def command(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be in 0..65535")
    problem = _check_run(args.db, args.run_id)
    if problem is not None:
        print(f"simtrio replay: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    divergences: list[str] = []
    try:
        trio.run(_main, args, divergences)
    except (OSError, BaseExceptionGroup, SimtrioError) as exc:
        error: BaseException | None = simtrio_error_of(exc) or find_leaf(exc, OSError)
        if error is None:
            raise
        print(f"simtrio replay: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    for message in divergences:
        print(f"simtrio replay: divergence: {message}", file=sys.stderr)
    return EXIT_FAILED if divergences else EXIT_OK
