"""``run_sweep`` with the local executor against the embedded reference server."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, ClassVar

import attrs
import pytest
import trio
import zstandard

from simtrio.params import CreateSession
from simtrio.recording import RunStatus, RunStore
from simtrio.recording.transfer import quarantine_dir
from simtrio.server import ServerConfig
from simtrio.sweep import (
    Cell,
    CellRunner,
    Executor,
    ExecutorUnavailable,
    LocalExecutor,
    NotShippable,
    ProcessExecutor,
    RayExecutor,
    SweepBusy,
    SweepError,
    SweepProgress,
    expand_grid,
    run_sweep,
    sweep_report,
)
from simtrio.sweep.ledger import SweepLock
from simtrio.sweep.worker import CellReport, CellTask, run_cell_shipped

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from pathlib import Path

S = "tests.sweep.strategies"
KEY = "sweep-test-key-5f1d"
RANGES = [CreateSession(0, end_slot=4), CreateSession(100, end_slot=104)]


def _manifests(db: Path) -> dict[str, object]:
    with RunStore.open(db) as store:
        return {m.run_id: m for m in store.list_runs()}


async def test_every_cell_is_one_run_labelled_in_the_ledger(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    cells = expand_grid(RANGES, {"tag": ["x", "y"]})
    table = await run_sweep(cells, f"{S}:counting", store=db, name="grid")
    assert table.all_ok
    assert [c.key for c in table.cells] == [c.key for c in cells]
    runs = _manifests(db)
    assert {c.run_id for c in table.cells} == set(runs)
    for outcome in table.cells:
        manifest = runs[outcome.run_id]  # type: ignore[index]
        assert manifest.status is RunStatus.ENDED  # type: ignore[attr-defined]
        assert manifest.outcome == "completed"  # type: ignore[attr-defined]
        assert isinstance(outcome.result, dict)
        assert outcome.result["slots"] == 5
        assert outcome.result["echo"] == outcome.params["tag"]  # type: ignore[index]
    assert sweep_report(db, "grid") == attrs.evolve(table, cells=tuple(
        sorted(table.cells, key=lambda c: c.key)
    ))  # fmt: skip


async def test_a_strategy_exception_fails_its_cell_not_the_sweep(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    cells = [Cell(RANGES[0], {"fail": True}), Cell(RANGES[1], {"fail": False})]
    table = await run_sweep(cells, f"{S}:failing_on", store=db, name="mixed")
    bad, good = table.cells
    assert good.outcome == "ok"
    assert bad.outcome == "failed"
    assert bad.error == "ValueError: this cell is meant to fail"
    assert bad.run_id is not None
    manifest = _manifests(db)[bad.run_id]
    assert manifest.outcome == "error"  # type: ignore[attr-defined]


async def test_a_result_that_is_not_json_fails_the_cell(tmp_path: Path) -> None:
    table = await run_sweep([Cell(RANGES[0])], f"{S}:not_json", store=tmp_path / "r.db", name="n")
    assert table.cells[0].outcome == "failed"
    assert "not JSON data" in (table.cells[0].error or "")


async def test_retries_run_a_failed_cell_again(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    cells = [Cell(RANGES[0], {"marker": str(tmp_path / "marker")}, key="flaky")]
    table = await run_sweep(cells, f"{S}:flaky", store=db, name="retry", retries=1)
    assert table.cells[0].outcome == "ok"
    assert table.cells[0].attempts == 2
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT attempt, outcome FROM sweep_cells WHERE sweep = 'retry' ORDER BY attempt"
        ).fetchall()
    assert rows == [(1, "failed"), (2, "ok")]


async def test_a_rerun_skips_succeeded_cells_and_reruns_failed_ones(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    marker = str(tmp_path / "marker")
    ready = tmp_path / "ready"
    ready.write_text("1")
    cells = [
        Cell(RANGES[0], {"marker": marker}, key="flaky"),
        Cell(RANGES[1], {"marker": str(ready)}, key="steady"),
    ]
    first = await run_sweep(cells, f"{S}:flaky", store=db, name="resume")
    assert [c.outcome for c in first.cells] == ["failed", "ok"]
    progress = SweepProgress()
    second = await run_sweep(cells, f"{S}:flaky", store=db, name="resume", progress=progress)
    assert [c.outcome for c in second.cells] == ["ok", "ok"]
    assert second.cells[0].attempts == 2
    assert second.cells[1].run_id == first.cells[1].run_id
    assert (progress.total, progress.skipped, progress.ok) == (2, 1, 1)
    runs_before = set(_manifests(db))
    third = await run_sweep(cells, f"{S}:flaky", store=db, name="resume")
    assert third == second
    assert set(_manifests(db)) == runs_before
    with sqlite3.connect(db) as conn:
        oks = conn.execute("SELECT count(*) FROM sweep_cells WHERE outcome = 'ok'").fetchone()
    assert oks == (2,)


async def test_cancelling_keeps_finished_cells_and_a_rerun_resumes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    blocking = [
        Cell(RANGES[0], {"block": True}, key="slow"),
        Cell(RANGES[1], key="quick"),
    ]
    quick_done = trio.Event()

    def on_attempt(task: CellTask, report: CellReport, final: bool) -> None:
        if task.key == "quick":
            quick_done.set()

    async with trio.open_nursery() as nursery:

        async def sweep() -> None:
            await run_sweep(
                blocking,
                f"{S}:first_step_then_wait",
                store=db,
                name="stop",
                progress=SweepProgress(on_attempt=on_attempt),
            )

        nursery.start_soon(sweep)
        with trio.fail_after(20):
            await quick_done.wait()
        nursery.cancel_scope.cancel()
    report = sweep_report(db, "stop").by_key()
    assert set(report) == {"quick"}
    assert report["quick"].outcome == "ok"
    # The stopped cell's run ends as cancelled, and the ledger has no row for it.
    outcomes = sorted(m.outcome for m in _manifests(db).values())  # type: ignore[attr-defined]
    assert outcomes == ["cancelled", "completed"]
    # The next run only runs the cell that did not finish.
    cells = [Cell(RANGES[0], {"block": False}, key="slow"), blocking[1]]
    table = await run_sweep(cells, f"{S}:first_step_then_wait", store=db, name="stop")
    assert table.all_ok
    assert table.by_key()["quick"].run_id == report["quick"].run_id


async def test_the_same_sweep_cannot_run_twice_at_once(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with RunStore.open(db), SweepLock(db, "busy"), pytest.raises(SweepBusy):
        await run_sweep([Cell(RANGES[0])], store=db, name="busy")


async def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"

    async def local_strategy(session: object, params: object) -> None:
        return None

    with pytest.raises(NotShippable, match="top level"):
        await run_sweep([Cell(RANGES[0])], local_strategy, store=db, name="x",
                        executor=ProcessExecutor(1))  # fmt: skip
    with pytest.raises(NotShippable, match="cannot be imported"):
        await run_sweep([Cell(RANGES[0])], "no_such_module_x:f", store=db, name="x")
    with pytest.raises(NotShippable, match="has no"):
        await run_sweep([Cell(RANGES[0])], f"{S}:missing", store=db, name="x")
    with pytest.raises(SweepError, match="retries"):
        await run_sweep([Cell(RANGES[0])], store=db, name="x", retries=-1)
    assert not db.exists()


STRATEGY_FILE = """
async def from_a_file(session, params):
    return None
"""


@pytest.mark.parametrize("executor", [ProcessExecutor(1), RayExecutor()], ids=["processes", "ray"])
async def test_a_strategy_loaded_from_a_file_path_is_not_shippable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: Executor
) -> None:
    # Registered in sys.modules it pickles (by reference) in the driver, but a worker process
    # cannot import it by its name: refused up front, before any cell runs.
    path = tmp_path / "strategy_file_only.py"
    path.write_text(STRATEGY_FILE)
    spec = importlib.util.spec_from_file_location("strategy_file_only", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "strategy_file_only", module)
    spec.loader.exec_module(module)
    db = tmp_path / "runs.db"
    for strategy in (module.from_a_file, "strategy_file_only:from_a_file"):
        with pytest.raises(NotShippable, match="cannot import by that name"):
            await run_sweep([Cell(RANGES[0])], strategy, store=db, name="x", executor=executor)
    assert not db.exists()
    # In the driver's own process nothing needs importing: the local executor runs it.
    table = await run_sweep([Cell(RANGES[0])], module.from_a_file, store=db, name="x")
    assert table.all_ok, table


async def test_the_api_key_reaches_the_server_but_never_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMULATOR_API_KEY", KEY)
    db = tmp_path / "runs.db"
    server = ServerConfig(api_key=KEY)
    cells = [Cell(RANGES[0], key="ok"), Cell(RANGES[1], key="leak")]
    table = await run_sweep(
        cells[:1], f"{S}:counting", store=db, name="key", api_key=KEY, server=server
    )
    assert table.all_ok
    leaky = await run_sweep(cells[1:], f"{S}:leaky", store=db, name="key2", api_key=KEY,
                            server=server, executor=LocalExecutor(2))  # fmt: skip
    assert leaky.cells[0].outcome == "failed"
    assert leaky.cells[0].error == "RuntimeError: the key is <redacted>"
    _assert_no_key(db)


def _assert_no_key(db: Path) -> None:
    needle = KEY.encode()
    with sqlite3.connect(db) as conn:
        for (payload,) in conn.execute("SELECT payload FROM entries"):
            assert needle not in zstandard.ZstdDecompressor().decompress(payload)
        for row in conn.execute("SELECT * FROM runs"):
            assert needle not in repr(row).encode()
        for row in conn.execute("SELECT * FROM sweep_cells"):
            assert needle not in repr(row).encode()
    for path in db.parent.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path


# --------------------------------------------------------------------------------------------
# Shipped runs without Ray: a worker thread records privately and sends the export back
# --------------------------------------------------------------------------------------------


@attrs.frozen
class _ThreadShipping(Executor):
    """Runs ``run_cell_shipped`` in a thread; optionally damages every export on the way."""

    name: ClassVar[str] = "thread-shipping"
    needs_pickling: ClassVar[bool] = True
    ships_runs: ClassVar[bool] = True
    damage: bool = False

    @asynccontextmanager
    async def open(self, *, store: Path, api_key: str) -> AsyncGenerator[CellRunner]:
        async def run(task: CellTask) -> CellReport:
            report = await trio.to_thread.run_sync(run_cell_shipped, task)
            if self.damage and report.export is not None:
                data = bytearray(zstandard.ZstdDecompressor().decompress(report.export))
                at = data.rindex(b'"run.ended"')
                data[at + 1 : at + 4] = b"RUN"
                report = attrs.evolve(
                    report, export=zstandard.ZstdCompressor().compress(bytes(data))
                )
            return report

        yield CellRunner(2, run)


@attrs.frozen
class _Order(Executor):
    """Runs nothing; notes the order in which cells are handed out (one slot, or two)."""

    name: ClassVar[str] = "order"
    needs_pickling: ClassVar[bool] = False
    slots: int = 1
    seen: list[str] = attrs.field(factory=list)

    @asynccontextmanager
    async def open(self, *, store: Path, api_key: str) -> AsyncGenerator[CellRunner]:
        async def run(task: CellTask) -> CellReport:
            self.seen.append(task.key)
            await trio.lowlevel.checkpoint()
            return CellReport(task.key, task.attempt, "ok", None, None, None, 0, 0.0)

        yield CellRunner(self.slots, run)


@pytest.mark.parametrize("slots", [1, 2])
async def test_cells_are_handed_out_in_the_order_given(tmp_path: Path, slots: int) -> None:
    # The scheduler may start sibling tasks in any order; the sweep must not pass that on
    # (a user's first cells, or a slow cell put first on purpose, start first).
    cells = [Cell(CreateSession(i * 10, end_slot=i * 10 + 1)) for i in range(6)]
    for round_ in range(12):
        executor = _Order(slots)
        table = await run_sweep(cells, f"{S}:counting", store=tmp_path / "runs.db",
                                name=f"order-{round_}", executor=executor,
                                url="ws://127.0.0.1:9/unused")  # fmt: skip
        assert table.all_ok
        assert executor.seen == [c.key for c in cells]


async def test_shipped_runs_are_imported_verified(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    cells = expand_grid(RANGES, {"tag": [1]})
    table = await run_sweep(cells, f"{S}:counting", store=db, name="ship",
                            executor=_ThreadShipping())  # fmt: skip
    assert table.all_ok
    runs = _manifests(db)
    assert {c.run_id for c in table.cells} == set(runs)
    with RunStore.open(db) as store:
        assert all(store.verify(run_id).intact for run_id in runs)


async def test_a_shipped_run_that_fails_verification_is_quarantined(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    table = await run_sweep([Cell(RANGES[0])], f"{S}:counting", store=db, name="bad",
                            executor=_ThreadShipping(damage=True))  # fmt: skip
    cell = table.cells[0]
    assert cell.outcome == "quarantined"
    assert "failed verification on import" in (cell.error or "")
    assert _manifests(db) == {}
    assert (
        len(list(quarantine_dir(RunStore(db, sqlite3.connect(":memory:"))).glob("*.simrun"))) == 1
    )


async def test_the_ray_executor_says_so_when_ray_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra gives
    with pytest.raises(ExecutorUnavailable, match="'ray' extra"):
        await run_sweep([Cell(RANGES[0])], f"{S}:counting", store=tmp_path / "r.db",
                        name="no-ray", executor=RayExecutor())  # fmt: skip
