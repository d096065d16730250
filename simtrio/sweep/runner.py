"""``run_sweep``: run every cell of a sweep on an executor, into one run store, resumably."""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import os
import pickle
import sys
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from simtrio.errors import SimtrioError
from simtrio.managed.config import ManagedConfig
from simtrio.recording.store import RunStore
from simtrio.recording.transfer import import_run
from simtrio.sweep.errors import NotShippable, SweepError
from simtrio.sweep.executors import Executor, LocalExecutor
from simtrio.sweep.ledger import Ledger, SweepLock
from simtrio.sweep.plan import OK, Cell, CellAttempt, Outcome, SweepTable, check_cells
from simtrio.sweep.worker import (
    DEFAULT_STRATEGY,
    ENV_API_KEY,
    CellReport,
    CellTask,
    Strategy,
    describe,
    resolve_strategy,
)

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from simtrio.server import ServerConfig

_T = TypeVar("_T")


@attrs.define
class SweepProgress:
    """Counters of a running sweep, for a progress display (read them, do not write them)."""

    total: int = 0
    skipped: int = 0
    """Cells that had already succeeded in an earlier run of the sweep."""
    ok: int = 0
    failed: int = 0
    """Cells whose last attempt (retries included) did not succeed."""
    running: int = 0
    attempts: int = 0
    started_at: float = 0.0
    """``time.monotonic()`` when the first cell was handed to the executor."""
    on_attempt: Callable[[CellTask, CellReport, bool], None] | None = None
    """Called after each attempt with ``(task, report, final)``."""

    @property
    def finished(self) -> int:
        return self.ok + self.failed

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.finished

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until the last cell ends at the pace so far (None before any cell ended)."""
        if not self.finished:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started_at
        return elapsed / self.finished * self.remaining


def _origin(spec: ModuleSpec | None) -> str | None:
    origin = None if spec is None else spec.origin
    return None if origin is None else os.path.realpath(origin)


def _find_by_name(name: str) -> ModuleSpec | None:
    """The spec a fresh interpreter would find for ``name`` (``sys.modules`` is not consulted)."""
    spec: ModuleSpec | None = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        path = None if spec is None else spec.submodule_search_locations
        if depth > 1 and path is None:
            return None
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(".".join(parts[:depth]), path, None)
            if spec is not None:
                break
        if spec is None:
            return None
    return spec


def _check_importable(function: Any, what: str) -> None:
    """A worker unpickles a function by importing its module by name: that must give it.

    A module loaded from a file path (``importlib.util.spec_from_file_location``, ``runpy``)
    and put in ``sys.modules`` pickles fine here, yet a worker cannot import it.
    """
    name = getattr(function, "__module__", None)
    module = sys.modules.get(name) if isinstance(name, str) else None
    if module is None or not isinstance(name, str):
        raise NotShippable(f"strategy {what} does not come from an importable module")
    found = _find_by_name(name)
    own = _origin(getattr(module, "__spec__", None)) or getattr(module, "__file__", None)
    if found is None or (own is not None and _origin(found) != os.path.realpath(own)):
        where = f" (it was loaded from {own})" if own else ""
        raise NotShippable(
            f"strategy {what} lives in module {name!r}, which workers cannot import by that "
            f"name{where}: put it in a module on the import path and pass 'module:function'"
        )


def _check_shippable(strategy: Strategy, cells: Sequence[Cell]) -> None:
    """Fail early, in the driver, for what a worker process could not receive."""
    if isinstance(strategy, str):
        _check_importable(resolve_strategy(strategy), repr(strategy))
    else:
        name = getattr(strategy, "__qualname__", repr(strategy))
        module = getattr(strategy, "__module__", None)
        if module == "__main__" or "<locals>" in name or "<lambda>" in name:
            raise NotShippable(
                f"strategy {name!r} cannot be sent to worker processes: define it at the top "
                "level of an importable module (or pass 'module:function')"
            )
        try:
            back = pickle.loads(pickle.dumps(strategy))
        except Exception as exc:
            raise NotShippable(f"strategy {name!r} cannot be pickled: {exc}") from None
        if back is not strategy:
            raise NotShippable(f"strategy {name!r} does not import back as itself")
        _check_importable(strategy, repr(name))
    for cell in cells:
        try:
            pickle.dumps((cell.create, dict(cell.params)))
        except Exception as exc:
            raise NotShippable(f"cell {cell.key!r} cannot be pickled: {exc}") from None


@contextlib.contextmanager
def _worker_environment(api_key: str) -> Generator[None]:
    """Put the API key where worker processes started meanwhile will find it."""
    if not api_key or os.environ.get(ENV_API_KEY) == api_key:
        yield
        return
    previous = os.environ.get(ENV_API_KEY)
    os.environ[ENV_API_KEY] = api_key
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV_API_KEY, None)
        else:
            os.environ[ENV_API_KEY] = previous


@asynccontextmanager
async def _target(
    url: str | None, server: ServerConfig | None, api_key: str
) -> AsyncGenerator[str]:
    if url is not None:
        yield url
        return
    from simtrio.server import ServerConfig, serve

    config = server or ServerConfig(api_key=api_key or None)
    async with serve(config) as embedded:
        yield embedded.control_url


class _Db:
    """The store and the ledger, used from one worker thread at a time."""

    def __init__(self, store: RunStore, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger
        self._limiter = trio.CapacityLimiter(1)

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)


def _open_db(path: Path) -> tuple[RunStore, Ledger]:
    store = RunStore.open(path)
    try:
        return store, Ledger.open(path)
    except BaseException:
        store.close()
        raise


def _close_db(db: _Db) -> None:
    db.ledger.close()
    db.store.close()


@attrs.frozen
class _Sweep:
    name: str
    strategy: Strategy
    executor: Executor
    retries: int
    config: ManagedConfig | None
    db: _Db
    progress: SweepProgress


async def _import(sweep: _Sweep, report: CellReport) -> CellReport:
    if report.export is None:
        return report
    try:
        imported = await sweep.db.call(import_run, sweep.db.store, report.export)
    except SimtrioError as exc:
        return attrs.evolve(report, outcome=Outcome.CRASHED, error=describe(exc), export=None)
    if not imported.ok:
        return attrs.evolve(
            report,
            outcome=Outcome.QUARANTINED,
            error=f"the run failed verification on import: {imported.problem}",
            export=None,
        )
    return attrs.evolve(report, export=None)


async def _run_cell(
    sweep: _Sweep,
    run: Callable[[CellTask], Any],
    limiter: trio.CapacityLimiter,
    url: str,
    cell: Cell,
    first_attempt: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    progress = sweep.progress
    for attempt in range(first_attempt, first_attempt + sweep.retries + 1):
        task = CellTask(
            sweep=sweep.name,
            key=cell.key,
            attempt=attempt,
            create=cell.create,
            params=dict(cell.params),
            strategy=sweep.strategy,
            url=url,
            executor=sweep.executor.name,
            config=sweep.config,
        )
        async with limiter:
            if attempt == first_attempt:
                task_status.started()  # the next cell may queue for a slot now
            if not progress.started_at:
                progress.started_at = time.monotonic()
            progress.running += 1
            try:
                report: CellReport = await run(task)
            finally:
                progress.running -= 1
        report = await _import(sweep, report)
        row = CellAttempt(
            sweep=sweep.name,
            key=cell.key,
            attempt=attempt,
            outcome=report.outcome,
            run_id=report.run_id,
            start_slot=cell.create.start_slot,
            end_slot=cell.create.end_slot,
            params=dict(cell.params),
            result=report.result,
            error=report.error,
            started_at_ns=report.started_at_ns,
            duration=report.duration,
            executor=sweep.executor.name,
        )
        await sweep.db.call(sweep.db.ledger.record, row)
        progress.attempts += 1
        final = report.outcome == OK or attempt == first_attempt + sweep.retries
        if report.outcome == OK:
            progress.ok += 1
        elif final:
            progress.failed += 1
        if progress.on_attempt is not None:
            progress.on_attempt(task, report, final)
        if final:
            return


async def run_sweep(
    cells: Sequence[Cell],
    strategy: Strategy | None = None,
    *,
    store: str | os.PathLike[str],
    name: str,
    executor: Executor | None = None,
    retries: int = 0,
    url: str | None = None,
    api_key: str | None = None,
    server: ServerConfig | None = None,
    config: ManagedConfig | None = None,
    progress: SweepProgress | None = None,
) -> SweepTable:
    """Run every cell of the sweep ``name`` and record each attempt as one run in ``store``.

    Cells that already succeeded in an earlier run of the same sweep (same store, same name,
    same cell key) are skipped; the others run, each up to ``1 + retries`` times. A strategy
    that raises fails its cell, not the sweep. Cancelling stops every running cell; what ended
    before is kept, and the next run resumes.

    Args:
        cells: the cells; their keys must be unique.
        strategy: ``async def strategy(session, params) -> result`` or ``"module:function"``;
            by default the stepping driver of ``simtrio run``.
        executor: :class:`LocalExecutor` (default), :class:`ProcessExecutor` or
            :class:`RayExecutor`.
        url: the simulator's control URL; None starts an embedded reference server
            (configured by ``server``) for the duration of the sweep.
        api_key: default ``$SIMULATOR_API_KEY``; it reaches workers through their environment,
            never as a task argument, and is redacted from every recorded run.
        config: the managed sessions' configuration.
        progress: counters to fill as cells run (for a progress display).

    Returns:
        One row per cell, in the order given.

    Raises:
        SweepError: bad cells, or a strategy that workers could not receive
            (:class:`NotShippable`); :class:`SweepBusy` when the same sweep is running.
        ExecutorUnavailable: the executor cannot start.
        StoreError: the store cannot be opened or written.
    """
    check_cells(cells)
    if not name.strip():
        raise SweepError("a sweep needs a name")
    if retries < 0:
        raise SweepError("retries must be >= 0")
    executor = LocalExecutor() if executor is None else executor
    strategy = DEFAULT_STRATEGY if strategy is None else strategy
    if executor.needs_pickling:
        _check_shippable(strategy, cells)
    else:
        resolve_strategy(strategy)
    if url is None and executor.remote:
        raise SweepError("the embedded server listens on loopback only: give the server's url")
    key = os.environ.get(ENV_API_KEY, "") if api_key is None else api_key
    path = Path(store)
    progress = SweepProgress() if progress is None else progress
    db = _Db(*await trio.to_thread.run_sync(_open_db, path))
    try:
        with SweepLock(path, name):
            rows = await db.call(db.ledger.attempts, name)
            done = {row.key for row in rows if row.outcome == OK}
            last_attempt: dict[str, int] = {}
            for row in rows:
                last_attempt[row.key] = max(last_attempt.get(row.key, 0), row.attempt)
            todo = [cell for cell in cells if cell.key not in done]
            progress.total = len(cells)
            progress.skipped = len(cells) - len(todo)
            sweep = _Sweep(name, strategy, executor, retries, config, db, progress)
            if todo:
                async with _target(url, server, key) as target:
                    with _worker_environment(key if executor.needs_pickling else ""):
                        async with executor.open(store=path, api_key=key) as runner:
                            limiter = trio.CapacityLimiter(runner.slots)
                            async with trio.open_nursery() as nursery:
                                # Cells are handed out in the order given: each one holds
                                # its slot before the next one queues for a slot.
                                for cell in todo:
                                    await nursery.start(
                                        _run_cell,
                                        sweep,
                                        runner.run,
                                        limiter,
                                        target,
                                        cell,
                                        last_attempt.get(cell.key, 0) + 1,
                                    )
            rows = await db.call(db.ledger.attempts, name)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_close_db, db)
    return SweepTable.build(name, rows, cells)


def sweep_report(store: str | os.PathLike[str], name: str) -> SweepTable:
    """The outcome of every cell the sweep ``name`` recorded in ``store`` (blocking).

    Raises:
        StoreError: no store there, or it cannot be read.
        SweepError: the store has no sweep of that name.
    """
    path = Path(store)
    with RunStore.open(path, create=False), Ledger.open(path) as ledger:
        rows = ledger.attempts(name)
        if not rows:
            known = ledger.sweeps()
            hint = f" (it has: {', '.join(known)})" if known else " (it has none)"
            raise SweepError(f"no sweep {name!r} in {str(path)!r}{hint}")
    return SweepTable.build(name, rows)
