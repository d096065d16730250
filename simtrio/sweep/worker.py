"""Running one cell: open a recorder and a session, call the strategy, say how it went.

The same code runs in the driver (``local``), in a worker process (``processes``: its own
``trio.run``) and in a Ray task (``ray``: its own ``trio.run``, recording into a store local to
the worker, then exporting the run so the driver can import it). What travels to a worker is a
:class:`CellTask`, which holds no credential: a worker reads the API key from its own
environment (``SIMULATOR_API_KEY``).
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import importlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final, cast

import attrs
import orjson
import trio

from simtrio.core.groups import first_leaf
from simtrio.errors import SimtrioError
from simtrio.managed.config import ManagedConfig
from simtrio.params import CreateSession
from simtrio.sweep.errors import NotShippable, SweepError
from simtrio.sweep.plan import Outcome
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.redact import REDACTED

ENV_API_KEY: Final = "SIMULATOR_API_KEY"

StrategyFunction = Callable[[Any, dict[str, JsonValue]], Awaitable[JsonValue]]
"""``async def strategy(session, params) -> result``: the session is a managed session, or a
parallel session when the cell's create request asks for one; the result is JSON data."""
Strategy = StrategyFunction | str
"""A strategy function, or ``"module:function"`` naming one."""

DEFAULT_STRATEGY: Final = "simtrio.sweep.strategies:stepping"


def resolve_strategy(strategy: Strategy) -> StrategyFunction:
    """The function a ``"module:function"`` string names (a function is returned as is).

    Raises:
        NotShippable: the module cannot be imported or has no such callable.
    """
    if not isinstance(strategy, str):
        return strategy
    module_name, sep, attr = strategy.partition(":")
    if not sep or not module_name or not attr:
        raise NotShippable(f"strategy {strategy!r} is not of the form module:function")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotShippable(f"strategy module {module_name!r} cannot be imported: {exc}") from None
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise NotShippable(f"module {module_name!r} has no {attr!r}")
    if not callable(target):
        raise NotShippable(f"strategy {strategy!r} is not callable")
    return cast("StrategyFunction", target)


@attrs.frozen
class CellTask:
    """Everything a worker needs to run one attempt at a cell; never a credential."""

    sweep: str
    key: str
    attempt: int
    create: CreateSession
    params: Mapping[str, JsonValue]
    strategy: Strategy
    url: str
    executor: str
    config: ManagedConfig | None = None


@attrs.frozen
class CellReport:
    """How one attempt went; ``export`` carries the recorded run back from a remote worker."""

    key: str
    attempt: int
    outcome: str
    run_id: str | None
    result: JsonValue
    error: str | None
    started_at_ns: int
    duration: float
    export: bytes | None = attrs.field(default=None, repr=False)


def describe(exc: BaseException) -> str:
    """``Type: message`` of the first leaf of ``exc`` (exception groups are unwrapped)."""
    leaf = first_leaf(exc)
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, REDACTED) if secret else text


def _result_text(result: object) -> str:
    try:
        return orjson.dumps(result).decode()
    except TypeError as exc:
        raise SweepError(f"the strategy's result is not JSON data: {exc}") from None


async def run_cell(task: CellTask, *, api_key: str, store: str | os.PathLike[str]) -> CellReport:
    """Run one attempt at a cell, recording it as one run in ``store``.

    A failure of the strategy or of the session is reported (outcome ``failed``, the run
    recorded with the error), never raised; cancellation propagates.
    """
    from simtrio.managed.parallel import open_parallel_session
    from simtrio.managed.session import open_managed_session
    from simtrio.recording.recorder import open_recorder

    started_ns = time.time_ns()
    clock = time.perf_counter()
    run_id: str | None = None

    def report(outcome: str, result: JsonValue, error: str | None) -> CellReport:
        return CellReport(
            task.key,
            task.attempt,
            outcome,
            run_id,
            result,
            error,
            started_ns,
            time.perf_counter() - clock,
        )

    try:
        strategy = resolve_strategy(task.strategy)
        params = dict(task.params)
        async with open_recorder(
            store, create_params=task.create, server_url=task.url, secrets=[api_key]
        ) as recorder:
            run_id = recorder.run_id
            if task.create.parallel:
                async with open_parallel_session(
                    task.url, api_key, task.create, config=task.config, recorder=recorder
                ) as parallel:
                    result = await strategy(parallel, params)
            else:
                async with open_managed_session(
                    task.url, api_key, task.create, config=task.config, recorder=recorder
                ) as session:
                    result = await strategy(session, params)
            text = _result_text(result)
    except Exception as exc:
        return report(Outcome.FAILED, None, _scrub(describe(exc), api_key))
    value: JsonValue = orjson.loads(text)
    return report(Outcome.OK, value, None)


def _env_key() -> str:
    return os.environ.get(ENV_API_KEY, "")


_CELL_MODULES: Final = (
    "simtrio.managed.parallel",
    "simtrio.managed.session",
    "simtrio.recording.recorder",
)


def init_worker_process() -> bool:
    """Set up a worker process of the ``processes`` executor, before its first cell.

    The worker leaves the driver's session, so that a kernel that shares CPU time between
    sessions (Linux autogroup scheduling) gives each worker its own share, as it gives to any
    other program, instead of splitting the driver's one share among all the workers. The
    modules a cell needs are imported here, while the worker waits for its first cell.
    """
    if hasattr(os, "setsid"):
        with contextlib.suppress(OSError):
            os.setsid()
    for module in _CELL_MODULES:
        importlib.import_module(module)
    return True


def run_cell_in_process(task: CellTask, store: str) -> CellReport:
    """Entry point of a worker process on the driver's machine: records straight into ``store``."""
    return trio.run(_run_with_env_key, task, store)


async def _run_with_env_key(task: CellTask, store: str) -> CellReport:
    return await run_cell(task, api_key=_env_key(), store=store)


def run_cell_shipped(task: CellTask) -> CellReport:
    """Entry point of a remote worker: record into a private store, send the run back."""
    from simtrio.recording.store import RunStore
    from simtrio.recording.transfer import export_run

    with tempfile.TemporaryDirectory(prefix="simtrio-cell-") as folder:
        path = Path(folder) / "cell.db"
        report = trio.run(_run_with_env_key, task, str(path))
        if report.run_id is None:
            return report
        try:
            with RunStore.open(path) as store:
                data = export_run(
                    store, report.run_id, labels={"sweep": task.sweep, "cell": task.key}
                )
        except SimtrioError as exc:
            return attrs.evolve(report, outcome=Outcome.CRASHED, error=describe(exc))
        return attrs.evolve(report, export=data)
