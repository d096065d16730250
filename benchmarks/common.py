"""The shared frame-server process, repeated measurement, tables and result files."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from benchmarks.clients import Timing, Unavailable, run_client

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent


@contextmanager
def frame_server() -> Iterator[int]:
    """Start ``benchmarks.server`` in its own process; yields its port on 127.0.0.1."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"frame server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@attrs.define
class Row:
    """One client stack of a benchmark: how to run it once, and what it measured."""

    name: str
    run: Callable[[], Any]
    trio_based: bool = True
    best: float = math.nan
    note: str = ""
    extra: dict[str, Any] = attrs.field(factory=dict)


def measure(rows: Sequence[Row], reps: int, limit: float = 60.0) -> None:
    """Run every row ``reps`` times, interleaved (the machine is shared), keeping the best."""
    for _ in range(reps):
        for row in rows:
            if row.note:
                continue
            try:
                timing: Timing = run_client(row.run, trio_based=row.trio_based, limit=limit)
            except Unavailable as exc:
                row.note = str(exc)
                continue
            except Exception as exc:  # a broken layer must not sink the other rows
                row.note = f"failed: {type(exc).__name__}: {exc}"[:160]
                continue
            if math.isnan(row.best) or timing.rate > row.best:
                row.best = timing.rate


def table(
    title: str, rows: Sequence[Row], baselines: Sequence[str], unit: str = "msgs/s"
) -> list[dict[str, Any]]:
    """Print rows with ratios against the named baseline rows; returns them as records."""
    by_name = {row.name: row for row in rows}
    width = max(len(row.name) for row in rows) + 2
    print(f"\n## {title}")
    head = f"{'client':<{width}}{unit:>12}" + "".join(
        f"{'x ' + b.split(' ')[0]:>16}" for b in baselines
    )
    print(head)
    print("-" * len(head))
    records = []
    for row in rows:
        ratios = {}
        cells = ""
        for base in baselines:
            ref = by_name[base].best
            ratio = row.best / ref if ref and not math.isnan(ref) else math.nan
            ratios[base] = None if math.isnan(ratio) else round(ratio, 3)
            cells += f"{'' if math.isnan(ratio) else f'{ratio:.2f}':>16}"
        value = "" if math.isnan(row.best) else f"{row.best:,.0f}"
        line = f"{row.name:<{width}}{value:>12}{cells}"
        if row.note:
            line += f"  ({row.note})"
        print(line)
        records.append(
            {
                "name": row.name,
                unit: None if math.isnan(row.best) else round(row.best, 1),
                "ratios": ratios,
                "note": row.note,
                **row.extra,
            }
        )
    return records


def write_result(name: str, params: dict[str, Any], tables: dict[str, Any], quick: bool) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    document = {
        "benchmark": name,
        "quick": quick,
        "params": params,
        "python": sys.version.split()[0],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "tables": tables,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
