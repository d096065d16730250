"""``simtrio sweep``: run a sweep file on an executor, and report a recorded sweep.

``simtrio sweep SPEC.toml --record DB [--executor local|processes|ray] [--address A]`` runs
every cell of the file (see :mod:`simtrio.sweep.spec`) and records each into ``DB``; run it
again to resume. ``simtrio sweep report DB NAME [--json]`` prints one row per cell.

Ctrl-C or SIGTERM stops the sweep: running cells are cancelled, finished ones are kept.
Exit status: 0 every cell succeeded, 1 some did not, 2 usage, 130 stopped.
"""

from __future__ import annotations

__all__: list[str] = []

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import orjson
import trio

from simtrio.cli.common import (
    ENV_API_KEY,
    ENV_URL,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandInfo,
    UsageError,
    add_json_flag,
    add_target_args,
    control_url,
    display_url,
)
from simtrio.cli.console import render_table
from simtrio.cli.output import format_duration, json_object, write_json
from simtrio.errors import SimtrioError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from simtrio.server import ServerConfig
    from simtrio.sweep import Cell, CellReport, CellTask, Executor, SweepProgress, SweepTable
    from simtrio.sweep.spec import SweepSpec

_USAGE = (
    "simtrio sweep SPEC.toml --record DB [--executor {local,processes,ray}] [--address A] "
    "[--workers N] [--retries N] [--json]\n       simtrio sweep report DB NAME [--json]"
)


INFO: Final = CommandInfo(
    name="sweep",
    help="run many backtests from a sweep file, or report a recorded sweep",
    usage=_USAGE,
    description=(
        "Run every cell (range x parameter combination) of a sweep file, recording each "
        "as one run into --record DB; running it again resumes (succeeded cells are "
        "skipped). 'sweep report DB NAME' prints one row per cell. Exit status: 0 all "
        "cells succeeded, 1 some did not, 2 usage, 130 stopped by Ctrl-C or SIGTERM."
    ),
)
"""The command's name and what ``--help`` says of it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="+", metavar="SPEC.toml | report DB NAME")
    p.add_argument(
        "--executor",
        choices=("local", "processes", "ray"),
        default="local",
        help="where cells run (default local)",
    )
    p.add_argument("--address", metavar="A", help="Ray cluster address (default: a local Ray)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="cells at once (local: 8, processes: one per core, ray: the cluster's CPUs)",
    )
    p.add_argument("--retries", type=int, metavar="N", help="extra attempts of a failed cell")
    p.add_argument("--record", metavar="DB", type=Path, help="the run store to record into")
    add_json_flag(p, "the outcome table as JSON")
    add_target_args(p)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


_VALUE_WIDTH = 16


def _params_text(params: object) -> str:
    """``name=value,...`` with long values shortened (``--json`` has them whole)."""
    obj = json_object(params)
    if not obj:
        return "-"
    parts: list[str] = []
    for name in sorted(obj):
        text = orjson.dumps(obj[name]).decode()
        if len(text) > _VALUE_WIDTH:
            text = text[: _VALUE_WIDTH - 3] + "..."
        parts.append(f"{name}={text}")
    return ",".join(parts)


def render_sweep_table(table: SweepTable) -> str:
    from simtrio.sweep.plan import key_fields

    rows: list[list[Any]] = []
    for c in table.cells:
        fields = " ".join(f"{k}={v}" for k, v in key_fields(c.result))
        rows.append(
            [
                c.key,
                f"{c.start_slot}-{c.end_slot}",
                _params_text(c.params),
                c.outcome,
                c.attempts,
                fields or (c.error or "-"),
                "-" if c.duration is None else format_duration(c.duration),
            ]
        )
    headers = ("CELL", "SLOTS", "PARAMS", "OUTCOME", "TRIES", "RESULT", "TIME")
    counts = table.to_json()["counts"]
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    return render_table(headers, rows) + f"\n{len(table.cells)} cells: {summary}"


def _print_table(table: SweepTable, *, as_json: bool, out: TextIO) -> None:
    if as_json:
        write_json(out, table.to_json())
    else:
        out.write(render_sweep_table(table) + "\n")
    out.flush()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    from simtrio.sweep import sweep_report

    if len(args.words) != 3:
        raise UsageError("sweep report takes DB NAME")
    for flag in ("record", "address", "workers", "retries"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} does not apply to sweep report")
    _, db, name = args.words
    try:
        table = sweep_report(db, name)
    except SimtrioError as exc:
        print(f"simtrio sweep report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print_table(table, as_json=args.json, out=sys.stdout)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------


def _url(args: argparse.Namespace, spec: SweepSpec, env: Mapping[str, str]) -> str | None:
    """``--url``, then the spec's, then ``$SIMULATOR_URL``; None (embedded) with --embedded.

    As for ``simtrio run``, the embedded server is never implied: no URL anywhere and no
    ``--embedded`` is a usage error.
    """
    fallback = spec.url or env.get(ENV_URL)
    return control_url(args, fallback, f", set url in the sweep file or ${ENV_URL}")


def _executor(args: argparse.Namespace) -> Executor:
    from simtrio.sweep import executor_named

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be >= 1")
    try:
        return executor_named(args.executor, workers=args.workers, address=args.address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


class _Display:
    """Progress on stderr: a live ``rich`` display on a terminal, a line per cell otherwise."""

    def __init__(self, progress: SweepProgress, err: TextIO, *, live: bool) -> None:
        self.progress = progress
        self.err = err
        self.live = live
        progress.on_attempt = self._attempt

    def _attempt(self, task: CellTask, report: CellReport, final: bool) -> None:
        if self.live:
            return
        retry = "" if final or report.outcome == "ok" else " (will retry)"
        detail = f": {report.error}" if report.error else ""
        self.err.write(
            f"cell {task.key} attempt {task.attempt}: {report.outcome}{retry}{detail} "
            f"({format_duration(report.duration)})\n"
        )
        self.err.flush()

    def _line(self) -> str:
        p = self.progress
        eta = p.eta()
        eta_text = "-" if eta is None else format_duration(eta)
        return (
            f"{p.ok + p.skipped}/{p.total} done, {p.running} running, {p.failed} failed"
            f" (skipped {p.skipped}), ETA {eta_text}"
        )

    async def run(self) -> None:
        if not self.live:
            await trio.sleep_forever()
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

        from simtrio.cli.progress import progress_display

        with progress_display(
            Console(file=self.err),
            TextColumn("[bold]sweep"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            transient=False,
        ) as bar:
            task = bar.add_task(self._line(), total=max(1, self.progress.total))
            try:
                while True:
                    p = self.progress
                    bar.update(
                        task,
                        total=max(1, p.total),
                        completed=p.ok + p.failed + p.skipped,
                        description=self._line(),
                    )
                    bar.refresh()
                    await trio.sleep(0.25)
            finally:
                p = self.progress
                bar.update(task, completed=p.ok + p.failed + p.skipped, description=self._line())
                bar.refresh()


async def _main(
    spec: SweepSpec,
    cells: list[Cell],
    args: argparse.Namespace,
    url: str | None,
    api_key: str,
    server: ServerConfig | None,
) -> tuple[SweepTable | None, bool]:
    from simtrio.sweep import SweepProgress, run_sweep

    progress = SweepProgress()
    display = _Display(progress, sys.stderr, live=sys.stderr.isatty())
    interrupted = False
    table: SweepTable | None = None
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def watch(scope: trio.CancelScope) -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    scope.cancel()

            with trio.CancelScope() as scope:
                nursery.start_soon(watch, scope)
                nursery.start_soon(display.run)
                table = await run_sweep(
                    cells,
                    spec.strategy,
                    store=args.record,
                    name=spec.name,
                    executor=_executor(args),
                    retries=spec.retries if args.retries is None else args.retries,
                    url=url,
                    api_key=api_key,
                    server=server,
                    progress=progress,
                )
            nursery.cancel_scope.cancel()
    return table, interrupted


def sweep_done_before(db: Path, name: str, keys: set[str]) -> int:
    """How many of ``keys`` already succeeded in the sweep ``name`` of ``db`` (0: no store)."""
    from simtrio.sweep import sweep_report

    if not db.exists():
        return 0
    try:
        table = sweep_report(db, name)
    except SimtrioError:
        return 0
    return sum(1 for c in table.cells if c.outcome == "ok" and c.key in keys)


def _run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    from simtrio.sweep import SweepError, sweep_report
    from simtrio.sweep.spec import load_spec

    env = os.environ if env is None else env
    if len(args.words) != 1:
        raise UsageError("give one sweep file (or: sweep report DB NAME)")
    if args.record is None:
        raise UsageError("--record DB is required: the sweep's runs and progress live there")
    if not args.record.parent.is_dir():
        raise UsageError(f"--record: no directory {args.record.parent}")
    if args.retries is not None and args.retries < 0:
        raise UsageError("--retries must be >= 0")
    try:
        spec = load_spec(args.words[0])
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    _executor(args)
    api_key: str = args.api_key if args.api_key is not None else env.get(ENV_API_KEY, "")
    url = _url(args, spec, env)
    server: ServerConfig | None = None
    if url is None:
        from simtrio.server import ServerConfig

        server = ServerConfig(seed=spec.seed, slot_delay=spec.slot_delay, api_key=api_key or None)
    where = display_url(url) if url is not None else "an embedded reference server"
    echo = f"simtrio sweep: {spec.describe()}; executor {args.executor}; server {where}"
    if api_key:
        echo = echo.replace(api_key, "<redacted>")
    print(echo, file=sys.stderr, flush=True)
    extra: dict[str, Any] = {}
    if server is not None and "program_ids" not in spec.params:
        extra["program_ids"] = list(server.program_ids)
    try:
        cells = spec.cells(extra)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    done = sweep_done_before(args.record, spec.name, {c.key for c in cells})
    if done:
        print(f"simtrio sweep: {done} of {len(cells)} cells succeeded earlier and are skipped",
              file=sys.stderr, flush=True)  # fmt: skip
    started = time.monotonic()
    try:
        table, interrupted = trio.run(_main, spec, cells, args, url, api_key, server)
    except SimtrioError as exc:
        text = str(exc).replace(api_key, "<redacted>") if api_key else str(exc)
        print(f"simtrio sweep: {text}", file=sys.stderr)
        return EXIT_FAILED
    if table is None:  # stopped: report what the store holds
        try:
            table = sweep_report(args.record, spec.name)
        except SimtrioError:
            table = None
    if table is not None:
        _print_table(table, as_json=args.json, out=sys.stdout)
    took = format_duration(time.monotonic() - started)
    if table is not None and not interrupted:
        print(f"simtrio sweep: finished in {took}", file=sys.stderr)
    if interrupted:
        print(f"simtrio sweep: stopped after {took}; run it again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if table is not None and table.all_ok else EXIT_FAILED


def command(args: argparse.Namespace) -> int:
    if args.words[0] == "report":
        return _report(args)
    return _run(args)
