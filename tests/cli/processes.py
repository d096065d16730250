"""``python -m simtrio`` as a child process, for the tests of signals and pipes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]


def simtrio_env() -> dict[str, str]:
    """This environment, importing this tree's simtrio first and naming no server."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("SIMULATOR_URL", None)
    return env


def spawn(*argv: str, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
    """Start ``python -m simtrio ARGV...``."""
    return subprocess.Popen(
        [sys.executable, "-m", "simtrio", *argv],
        cwd=ROOT,
        env=simtrio_env(),
        stdout=stdout,
        stderr=stderr,
    )


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Kill ``proc`` on the way out if it is still running, whatever the block raised."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_line(stream: IO[bytes] | None, needle: bytes, deadline: float) -> bytes:
    """What ``stream`` printed up to the first line holding ``needle`` (by ``deadline``)."""
    assert stream is not None
    seen = b""
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not seen; got {seen!r}")
