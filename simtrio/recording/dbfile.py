"""The SQLite file under a run store (and the sweep ledger that shares it): connection and
transactions.

One connection per opened file, in autocommit mode so that transactions are explicit: writes
take the write lock up front (``BEGIN IMMEDIATE``) and are rolled back on any exception; reads
that run several queries share one snapshot.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Final, Self

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

BUSY_TIMEOUT_MS: Final = 10_000
"""How long a connection waits for another process's write lock before failing."""


def connect(file: Path) -> sqlite3.Connection:
    """A connection to ``file`` usable from any one thread at a time (raises sqlite3 errors)."""
    return sqlite3.connect(
        file, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Generator[None]:
    """One immediate transaction: committed on success, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Generator[None]:
    """One read transaction, so several queries see the same snapshot."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("COMMIT")


class SqliteFile:
    """An open SQLite file: its path and connection, closed by :meth:`close` or ``with``."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
