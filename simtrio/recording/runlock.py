"""Liveness of a recording run: one lock file per run, released by the kernel if the process dies."""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def lock_path(store: Path, run_id: str) -> Path:
    """Where the lock file of ``run_id`` in the store file ``store`` lives."""
    return store.with_name(store.name + ".locks") / f"{run_id}.lock"


class RunLock:
    """An exclusive ``flock`` on ``<store>.locks/<run_id>.lock``.

    ``flock`` locks belong to an open file description, so a sweep in the same process as a
    live recorder sees the run as live too; a killed process releases its locks at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another recorder holds it.

        Raises:
            OSError: the lock file cannot be created.
        """
        for _attempt in range(5):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                continue  # the directory was removed by a releasing run in between: retry
            break
        else:
            raise OSError(f"cannot create lock file {str(self.path)!r}")
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Unlink first, then close (which unlocks): a sweep that opened the old file meanwhile
        # finds the run no longer RUNNING when it re-reads the status under its write lock.
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(fd)
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # only succeeds once no run holds a lock file
