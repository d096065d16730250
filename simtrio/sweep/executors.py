"""Where cells run: in this process, in worker processes, or as Ray tasks; one interface.

An executor's :meth:`Executor.open` yields a :class:`CellRunner` for the duration of a sweep:
``await runner.run(task)`` runs one attempt at a cell and returns its
:class:`~simtrio.sweep.worker.CellReport`; ``runner.slots`` is how many cells it runs at once.
A worker that dies is reported as a ``crashed`` attempt, never raised; cancelling ``run``
stops the attempt (a worker process is killed, a Ray task cancelled).
"""

from __future__ import annotations

__all__: list[str] = []

import abc
import functools
import importlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import trio

from simtrio.sweep.errors import ExecutorUnavailable
from simtrio.sweep.plan import Outcome
from simtrio.sweep.worker import (
    CellReport,
    CellTask,
    init_worker_process,
    run_cell,
    run_cell_in_process,
    run_cell_shipped,
)

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

logger = logging.getLogger(__name__)


@attrs.frozen
class CellRunner:
    """Runs attempts at cells; valid inside its executor's ``open`` block."""

    slots: int
    """Cells that run at once (the driver never hands over more)."""
    run: Callable[[CellTask], Awaitable[CellReport]]


def _crashed(task: CellTask, error: str, started_ns: int, clock: float) -> CellReport:
    return CellReport(
        task.key,
        task.attempt,
        Outcome.CRASHED,
        None,
        None,
        error,
        started_ns,
        time.perf_counter() - clock,
    )


class Executor(abc.ABC):
    """The common interface of the executors."""

    name: ClassVar[str]
    needs_pickling: ClassVar[bool] = True
    """Strategy, parameters and create requests travel to other processes."""
    ships_runs: ClassVar[bool] = False
    """Workers record into their own store and send each run back for import."""

    @property
    def remote(self) -> bool:
        """Workers may run on other machines (so a loopback server is out of their reach)."""
        return False

    @abc.abstractmethod
    def open(self, *, store: Path, api_key: str) -> AbstractAsyncContextManager[CellRunner]:
        """Start the workers; stop them (and every attempt still running) on leaving."""

    def describe(self) -> str:
        return self.name


@attrs.frozen
class LocalExecutor(Executor):
    """Cells run as trio tasks of the driver, at most ``max_cells`` at once."""

    name: ClassVar[str] = "local"
    needs_pickling: ClassVar[bool] = False
    max_cells: int = attrs.field(default=8, validator=attrs.validators.ge(1))

    @asynccontextmanager
    async def open(self, *, store: Path, api_key: str) -> AsyncGenerator[CellRunner]:
        async def run(task: CellTask) -> CellReport:
            return await run_cell(task, api_key=api_key, store=store)

        yield CellRunner(self.max_cells, run)

    def describe(self) -> str:
        return f"local ({self.max_cells} at once)"


def _cpu_count() -> int:
    return os.cpu_count() or 1


@attrs.frozen
class ProcessExecutor(Executor):
    """Each cell runs its own ``trio.run`` in a worker process of this machine.

    ``workers`` defaults to one per core. Workers record straight into the sweep's store (it
    is on this machine) and inherit the driver's environment, API key included.
    """

    name: ClassVar[str] = "processes"
    workers: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )

    @property
    def slots(self) -> int:
        return self.workers or _cpu_count()

    @asynccontextmanager
    async def open(self, *, store: Path, api_key: str) -> AsyncGenerator[CellRunner]:
        trio_parallel: Any = importlib.import_module("trio_parallel")
        limiter = trio.CapacityLimiter(self.slots)
        async with trio_parallel.open_worker_context(init=init_worker_process) as context:

            async def run(task: CellTask) -> CellReport:
                started_ns, clock = time.time_ns(), time.perf_counter()
                try:
                    report: CellReport = await context.run_sync(
                        run_cell_in_process,
                        task,
                        str(store),
                        kill_on_cancel=True,
                        limiter=limiter,
                    )
                except trio_parallel.BrokenWorkerError as exc:
                    return _crashed(task, f"worker process died: {exc}", started_ns, clock)
                return report

            yield CellRunner(self.slots, run)

    def describe(self) -> str:
        return f"processes ({self.slots} workers)"


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ExecutorUnavailable(
            "the ray executor needs Ray: install simtrio with the 'ray' extra"
        ) from None


@attrs.frozen
class RayExecutor(Executor):
    """Each cell is a Ray task running its own ``trio.run``.

    With no ``address`` a local Ray instance is started (``num_cpus`` CPUs, default all) and
    shut down after the sweep; with one, the driver joins that cluster. A Ray runtime already
    initialised by the caller is used as it is and left running. Workers record into a
    temporary store of their own and send the run back; the driver imports it with its hash
    chain verified. The API key is never a task argument: workers read ``SIMULATOR_API_KEY``
    from their environment (a local instance inherits the driver's).
    """

    name: ClassVar[str] = "ray"
    ships_runs: ClassVar[bool] = True
    address: str | None = None
    num_cpus: int | None = None

    @property
    def remote(self) -> bool:
        return self.address is not None

    @asynccontextmanager
    async def open(self, *, store: Path, api_key: str) -> AsyncGenerator[CellRunner]:
        ray = _import_ray()
        owned = not ray.is_initialized()
        if owned:
            init = functools.partial(
                ray.init,
                address=self.address,
                num_cpus=self.num_cpus if self.address is None else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
            try:
                await trio.to_thread.run_sync(init)
            except Exception as exc:
                raise ExecutorUnavailable(
                    f"cannot start Ray: {type(exc).__name__}: {exc}"
                ) from None
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            slots = max(1, self.num_cpus or cpus)
            task_function = ray.remote(num_cpus=1, max_retries=0)(run_cell_shipped)

            async def run(task: CellTask) -> CellReport:
                started_ns, clock = time.time_ns(), time.perf_counter()
                ref = task_function.remote(task)
                try:
                    report: CellReport = await trio.to_thread.run_sync(
                        ray.get, ref, abandon_on_cancel=True
                    )
                except trio.Cancelled:
                    ray.cancel(ref, force=True)
                    raise
                except Exception as exc:
                    return _crashed(task, f"Ray task lost: {type(exc).__name__}", started_ns, clock)
                return report

            yield CellRunner(slots, run)
        finally:
            if owned:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(ray.shutdown)

    def describe(self) -> str:
        where = self.address or "local"
        return f"ray ({where})"


def executor_named(
    name: str,
    *,
    workers: int | None = None,
    address: str | None = None,
) -> Executor:
    """The executor the command line's ``--executor NAME`` means.

    Raises:
        ValueError: an unknown name, or an option that does not apply to it.
    """
    if address is not None and name != "ray":
        raise ValueError("--address only applies to the ray executor")
    if name == "local":
        return LocalExecutor(workers or 8)
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address, workers)
    raise ValueError(f"unknown executor {name!r} (choose local, processes or ray)")
