"""The same sweep gives the same recorded events whichever executor ran it."""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simtrio.params import CreateSession
from simtrio.recording import RunStore
from simtrio.recording.format import Plane
from simtrio.server import ServerConfig
from simtrio.sweep import (
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    SweepProgress,
    SweepTable,
    expand_grid,
    run_sweep,
)

if TYPE_CHECKING:
    from simtrio.sweep.worker import CellReport, CellTask

KEY = "executor-test-key-93be"
STRATEGY = "tests.sweep.strategies:counting"
CELLS = expand_grid(
    [CreateSession(0, end_slot=5), CreateSession(200, end_slot=203, send_summary=True)],
    {"tag": ["a", "b"]},
)
_PORT = re.compile(rb"127\.0\.0\.1:\d+")


def _fingerprint(db: Path, table: SweepTable) -> dict[str, tuple[list[bytes], list[bytes]]]:
    """Per cell: its control entries in order and its data entries as a sorted list.

    Session ids (numbered by the server in creation order, which concurrency shuffles) and the
    server's port are replaced by placeholders; timestamps are left out.
    """
    out: dict[str, tuple[list[bytes], list[bytes]]] = {}
    with RunStore.open(db) as store:
        for cell in table.cells:
            assert cell.run_id is not None
            entries = list(store.iter_entries(cell.run_id))
            names: dict[str, bytes] = {}
            for e in entries:
                if e.session_id is not None and e.session_id not in names:
                    names[e.session_id] = b"<session-%d>" % len(names)

            def norm(payload: bytes, names: dict[str, bytes] = names) -> bytes:
                for session_id, name in names.items():
                    payload = payload.replace(session_id.encode(), name)
                return _PORT.sub(b"<server>", payload)

            control = [
                e.kind.encode() + b" " + norm(e.payload)
                for e in entries
                if e.plane in (Plane.CONTROL, Plane.SENT)
            ]
            data = sorted(norm(e.payload) for e in entries if e.plane is Plane.DATA)
            out[cell.key] = (control, data)
    return out


async def _sweep(
    tmp_path: Path, executor: Executor, progress: SweepProgress | None = None
) -> tuple[SweepTable, dict[str, tuple[list[bytes], list[bytes]]]]:
    db = tmp_path / f"{executor.name}.db"
    table = await run_sweep(
        CELLS,
        STRATEGY,
        store=db,
        name="same",
        executor=executor,
        api_key=KEY,
        server=ServerConfig(api_key=KEY, seed=7),
        progress=progress,
    )
    assert table.all_ok, table
    return table, _fingerprint(db, table)


def _results(table: SweepTable) -> dict[str, object]:
    return {c.key: c.result for c in table.cells}


async def test_local_and_processes_record_the_same_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers find the key in their environment, which the sweep sets from api_key=.
    monkeypatch.delenv("SIMULATOR_API_KEY", raising=False)
    local, local_events = await _sweep(tmp_path, LocalExecutor(2))
    procs, procs_events = await _sweep(tmp_path, ProcessExecutor(2))
    assert _results(procs) == _results(local)
    assert procs_events == local_events
    assert all(data for _, data in local_events.values())
    assert {c.executor for c in procs.cells} == {"processes"}


@pytest.mark.skipif(not hasattr(os, "getsid"), reason="POSIX sessions")
async def test_process_workers_lead_their_own_sessions_and_are_reused(tmp_path: Path) -> None:
    # A scheduler that shares CPU time per session (Linux autogroup) must see every worker as
    # its own program; with all workers in the driver's session they shared one core's worth.
    cells = expand_grid([CreateSession(i * 10, end_slot=i * 10 + 1) for i in range(4)], None)
    table = await run_sweep(
        cells,
        "tests.sweep.strategies:whereabouts",
        store=tmp_path / "runs.db",
        name="where",
        executor=ProcessExecutor(2),
    )
    assert table.all_ok, table
    places = [c.result for c in table.cells]
    assert all(isinstance(p, dict) for p in places)
    pids = {p["pid"] for p in places}  # type: ignore[index]
    assert os.getpid() not in pids
    assert len(pids) <= 2  # workers run cell after cell; none is started per cell
    for place in places:
        assert place["sid"] == place["pid"]  # type: ignore[index]
        assert place["sid"] != os.getsid(0)  # type: ignore[index]


def _ray_session_files() -> list[Path]:
    """Every file of the latest Ray session, in the temporary folder Ray chose for it."""
    try:
        from ray._common.utils import get_default_ray_temp_dir as ray_temp_dir
    except ImportError:  # older Ray releases keep it here
        from ray._private.utils import get_ray_temp_dir as ray_temp_dir

    root = Path(ray_temp_dir()) / "session_latest"
    if not root.exists():
        return []
    return [p for p in root.resolve().rglob("*") if p.is_file() and not p.is_symlink()]


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _ray_installed(), reason="Ray is not installed (the 'ray' extra)")
async def test_ray_records_the_same_events_and_never_sees_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMULATOR_API_KEY", raising=False)
    tasks: list[CellTask] = []

    def on_attempt(task: CellTask, report: CellReport, final: bool) -> None:
        tasks.append(task)

    local, local_events = await _sweep(tmp_path, LocalExecutor(2))
    ray_table, ray_events = await _sweep(
        tmp_path, RayExecutor(num_cpus=2), SweepProgress(on_attempt=on_attempt)
    )
    assert _results(ray_table) == _results(local)
    assert ray_events == local_events
    # The key is no task argument, and nothing Ray wrote down holds it.
    assert len(tasks) == len(CELLS)
    for task in tasks:
        assert KEY.encode() not in pickle.dumps(task)
    files = _ray_session_files()
    assert files, "no Ray session directory to inspect"
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        assert KEY.encode() not in data, path
    import ray

    assert not ray.is_initialized()
