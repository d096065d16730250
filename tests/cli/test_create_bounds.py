"""A create that asks for too much fails at once, as one clear error, in a real process."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")


def _limit_memory() -> None:  # pragma: no cover - runs in the child before exec
    two_gib = 2 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (two_gib, two_gib))


@pytest.mark.parametrize("parallel", ["--parallel", "--no-parallel"])
def test_a_huge_range_fails_fast_with_the_servers_reason(parallel: str) -> None:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("SIMULATOR_URL", None)
    argv = ["run", "--embedded", "--start-slot", "1000", "--slot-count", "100000000000", parallel]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "simtrio", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
            preexec_fn=_limit_memory,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not end within 60 s")
    output = (done.stdout + done.stderr).decode()
    # The server refused the create as invalid: a usage error, in one line.
    assert done.returncode == 2, output
    assert "CreateFailed" in output
    assert len([line for line in output.splitlines() if "error:" in line]) == 1
    assert "100000000001 slots" in output
    assert "at most 1000000" in output
    assert "Traceback" not in output
