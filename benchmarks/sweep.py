"""Benchmark: one sweep of CPU-bound cells on each executor (local, processes, Ray).

Every cell steps a short backtest of the embedded reference server and burns a fixed amount of
pure-Python work per event, so a cell costs the same CPU whichever executor runs it. Reported
per executor, all measured in the same run: wall time of the sweep (from the first cell handed
out, and including executor start-up), speed-up over ``local``, and the per-cell overhead:
``(wall x parallelism - work) / cells``, the time a worker slot spends on a cell besides the
strategy's own work (session set-up, recording, shipping, scheduling). ``local`` runs every
cell in the driver's one thread, so its parallelism is 1 however many cells overlap.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from benchmarks.common import write_result
from simtrio import events
from simtrio.params import Continue, CreateSession
from simtrio.sweep import (
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    SweepProgress,
    expand_grid,
    run_sweep,
)

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue

STRATEGY = "benchmarks.sweep:toy"


def _burn(rounds: int) -> int:
    acc = 0
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


async def toy(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """Step to completion; ``work`` rounds of arithmetic for every event received."""
    work = params.get("work", 0)
    assert isinstance(work, int)
    count = 0
    spent = 0.0
    async for event in session.events():
        count += 1
        start = time.process_time()
        _burn(work)
        spent += time.process_time() - start
        if isinstance(event, events.ReadyForContinue):
            await session.send_continue(Continue(1))
    return {"events": count, "work_seconds": spent}


async def _one(executor: Executor, cells: int, work: int, folder: Path) -> dict[str, Any]:
    creates = [CreateSession(i * 20, end_slot=i * 20 + 9) for i in range(cells)]
    plan = expand_grid(creates, None, {"work": work})
    progress = SweepProgress()
    begun = time.monotonic()
    table = await run_sweep(
        plan,
        STRATEGY,
        store=folder / f"{executor.name}.db",
        name="bench",
        executor=executor,
        progress=progress,
    )
    ended = time.monotonic()
    if not table.all_ok:
        bad = next(c for c in table.cells if c.outcome != "ok")
        raise RuntimeError(f"cell {bad.key}: {bad.outcome}: {bad.error}")
    work_seconds = sum(
        float(c.result["work_seconds"])  # type: ignore[arg-type, index, call-overload]
        for c in table.cells
    )
    return {
        "wall": ended - progress.started_at,
        "total": ended - begun,
        "work": work_seconds,
        "cells": len(table.cells),
    }


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def run(port: int, *, quick: bool) -> dict[str, Any]:
    del port  # this benchmark brings its own server
    cells = 4 if quick else 64
    work = 2_000 if quick else 200_000
    rows: list[tuple[str, Executor, int]] = [
        ("local", LocalExecutor(8), 1),
        ("processes (2 workers)", ProcessExecutor(2), 2),
    ]
    notes: dict[str, str] = {}
    if quick:
        notes["ray (local, 2 CPUs)"] = "skipped in --quick (Ray start-up alone takes seconds)"
    elif not _ray_installed():
        notes["ray (local, 2 CPUs)"] = "skipped: Ray is not installed (the 'ray' extra)"
    else:
        rows.append(("ray (local, 2 CPUs)", RayExecutor(num_cpus=2), 2))
    print(
        f"\n## sweep: {cells} cells x 10 slots, {work:,} rounds of arithmetic per event,"
        f" one run per executor ({os.cpu_count()} CPUs here)"
    )
    head = (
        f"{'executor':<24}{'wall s':>9}{'with start s':>14}{'speed-up':>10}"
        f"{'work s':>9}{'overhead/cell ms':>18}"
    )
    print(head)
    print("-" * len(head))
    records: list[dict[str, Any]] = []
    base: float | None = None
    with tempfile.TemporaryDirectory(prefix="simtrio-bench-sweep-") as tmp:
        for name, executor, parallelism in rows:
            try:
                m = trio.run(_one, executor, cells, work, Path(tmp))
            except Exception as exc:  # one broken executor must not sink the others
                notes[name] = f"failed: {type(exc).__name__}: {exc}"[:160]
                continue
            base = m["wall"] if base is None else base
            speedup = base / m["wall"]
            overhead = (m["wall"] * parallelism - m["work"]) / m["cells"]
            print(
                f"{name:<24}{m['wall']:>9.2f}{m['total']:>14.2f}{speedup:>10.2f}"
                f"{m['work']:>9.2f}{overhead * 1000:>18.1f}"
            )
            records.append(
                {
                    "executor": name,
                    "wall_seconds": round(m["wall"], 3),
                    "total_seconds_with_startup": round(m["total"], 3),
                    "speedup_over_local": round(speedup, 3),
                    "work_seconds": round(m["work"], 3),
                    "overhead_per_cell_ms": round(overhead * 1000, 1),
                    "parallelism": parallelism,
                }
            )
    for name, note in notes.items():
        print(f"{name:<24}({note})")
    params = {"cells": cells, "slots_per_cell": 10, "work_rounds_per_event": work}
    path = write_result("sweep", params, {"executors": records, "notes": notes}, quick)
    print(f"results: {path}")
    return {"executors": records, "notes": notes}
