"""A recording process killed with SIGKILL mid-run: the next open recovers the run intact."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from simtrio.recording import RunStatus, RunStore

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

RECORDING_SCRIPT = """
import sys
import trio
from simtrio.recording import open_recorder
from simtrio.wire import types

async def main():
    async with open_recorder(sys.argv[1], create_params=None, server_url="ws://127.0.0.1:9/backtest",
                             flush_interval=0.01, flush_size=16) as rec:
        print("run", rec.run_id, flush=True)
        for i in range(1_000_000):
            await rec.record_control("backtest_x", types.SlotNotification(i), seq_id=i + 1)
            if i % 20 == 19:
                await rec.flush()
                print("durable", rec.entries_durable, flush=True)

trio.run(main)
"""

DURABLE_TARGET = 300
DEADLINE = 20.0


def _read_until_durable(proc: subprocess.Popen[bytes]) -> tuple[str, int]:
    """Read the child's reports until DURABLE_TARGET entries are durable (bounded in time)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    run_id = ""
    durable = 0
    deadline = time.monotonic() + DEADLINE
    while durable < DURABLE_TARGET:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the recording process did not report in time"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"the recording process exited early ({proc.poll()})"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            word, value = line.decode().split()
            if word == "run":
                run_id = value
            else:
                durable = int(value)
    return run_id, durable


def test_sigkill_mid_run_recovers_intact(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDING_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        run_id, durable = _read_until_durable(proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert run_id
    assert durable >= DURABLE_TARGET

    with RunStore.open(path) as store:
        recovered = {r.run_id: r for r in store.recovered}
        assert recovered[run_id].status is RunStatus.CRASHED_RECOVERED
        manifest = store.get_run(run_id)
        assert manifest.status is RunStatus.CRASHED_RECOVERED
        assert manifest.entry_count >= durable
        verdict = store.verify(run_id)
        assert verdict.intact
        assert not verdict.ended
        assert verdict.entries == manifest.entry_count
        slots = [e.text for e in store.iter_entries(run_id)][1:durable]
        assert slots[0] == '{"seqId":1,"method":"slotNotification","params":0}'
