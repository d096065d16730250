"""Sweeps: many backtests as one job, on this machine or a Ray cluster, into one run store.

A sweep is a named set of :class:`Cell` s (a create request plus the strategy's parameters).
:func:`run_sweep` runs each cell's strategy (``async def strategy(session, params) ->
result``) on an executor, records every attempt as one run of the store, labelled in the
store's sweep ledger with the sweep name and cell key, and returns a :class:`SweepTable`.
Re-running the same sweep skips the cells that already succeeded.

Executors: :class:`LocalExecutor` (trio tasks of this process), :class:`ProcessExecutor`
(worker processes through ``trio-parallel``) and :class:`RayExecutor` (Ray tasks; needs the
``ray`` extra, imported only when used).
"""

from __future__ import annotations

__all__ = [
    "Cell",
    "CellOutcome",
    "CellReport",
    "CellRunner",
    "CellTask",
    "Executor",
    "ExecutorUnavailable",
    "LocalExecutor",
    "NotShippable",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "Strategy",
    "StrategyFunction",
    "SweepBusy",
    "SweepError",
    "SweepProgress",
    "SweepTable",
    "cell_key",
    "executor_named",
    "expand_grid",
    "run_sweep",
    "sweep_report",
]

from simtrio.sweep.errors import ExecutorUnavailable, NotShippable, SweepBusy, SweepError
from simtrio.sweep.executors import (
    CellRunner,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    executor_named,
)
from simtrio.sweep.plan import Cell, CellOutcome, Outcome, SweepTable, cell_key, expand_grid
from simtrio.sweep.runner import SweepProgress, run_sweep, sweep_report
from simtrio.sweep.worker import CellReport, CellTask, Strategy, StrategyFunction
