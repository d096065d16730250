"""Process-level behaviour: Ctrl-C and a closed stdout pipe, via ``python -m simtrio``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from .processes import reaped, spawn, wait_for_line

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pipes")


@pytest.mark.parametrize(
    ("parallel", "signum", "status"),
    [
        ("--parallel", signal.SIGINT, 130),
        ("--no-parallel", signal.SIGINT, 130),
        ("--parallel", signal.SIGTERM, 143),
        ("--no-parallel", signal.SIGTERM, 143),
    ],
)
def test_a_signal_stops_the_run_gracefully(
    tmp_path: Path, parallel: str, signum: int, status: int
) -> None:
    db = tmp_path / "runs.db"
    out_file = tmp_path / "run.ndjson"
    proc = spawn(
        "run", "--embedded", "--start-slot", "0", "--end-slot", "999", parallel,
        "--slot-delay", "0.005", "--record", str(db), "--output-file", str(out_file), "-v",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    with reaped(proc):
        # The signal lands once the server created the session: the run is under way.
        head = wait_for_line(proc.stderr, b"created ", time.monotonic() + 5)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=5)
    err = head + err
    assert proc.returncode == status, err.decode(errors="replace")
    assert b"Traceback" not in err
    assert b"KeyboardInterrupt" not in err
    text = out.decode()
    assert "interrupted" in text
    assert "slots run" in text
    # The output file was flushed and closed with its summary.
    last = json.loads(out_file.read_text().splitlines()[-1])
    assert last["type"] == "summary"
    assert last["data"]["status"] == "interrupted"
    # The recording ended as cancelled, not as an error.
    from simtrio.recording import list_runs

    (run,) = list_runs(db)
    assert run.status.value == "ENDED"
    assert run.outcome == "cancelled"


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    proc = spawn(
        "run", "--embedded", "--start-slot", "0", "--end-slot", "99999", "--slot-delay", "0.005",
        "-v", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    with reaped(proc):
        wait_for_line(proc.stderr, b"created ", time.monotonic() + 5)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=5)
    assert proc.returncode == 143


def test_closed_stdout_pipe_exits_quietly() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # nobody will ever read: the first write gets EPIPE
    try:
        proc = spawn("ranges", "--embedded", stdout=write_fd, stderr=subprocess.PIPE)
    finally:
        os.close(write_fd)
    _, err = proc.communicate(timeout=10)
    assert b"BrokenPipeError" not in err
    assert b"Traceback" not in err
    assert proc.returncode == 141


def test_head_closing_early_exits_quietly() -> None:
    proc = spawn("ranges", "--embedded", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read()
    proc.wait(timeout=10)
    assert first.startswith(b"BUNDLE-START")
    assert b"BrokenPipeError" not in err
    assert b"Traceback" not in err


def test_signals_are_ignored_once_the_command_has_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signal while the interpreter shuts down must not kill a process whose status,
    summary and recording are final."""
    import simtrio.cli.main as cli_main

    monkeypatch.setattr(cli_main, "main", lambda: 0)
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exited:
            cli_main.entry()
        assert exited.value.code == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
