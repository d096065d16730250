"""The sweep ledger: which run each attempt at a cell produced, inside the run store file.

One table, ``sweep_cells``, next to the store's own tables: a row per finished attempt, written
in its own transaction as soon as the attempt ends, so a driver killed mid-sweep loses no
finished cell. A partial unique index allows at most one ``ok`` row per cell: a cell is never
recorded twice as successful, whatever two drivers race.

Plain blocking code (the driver calls it from a worker thread, one call at a time).
"""

from __future__ import annotations

__all__: list[str] = []

import hashlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import orjson

from simtrio.recording.boundary import store_errors
from simtrio.recording.dbfile import BUSY_TIMEOUT_MS, SqliteFile, connect, write_transaction
from simtrio.recording.errors import StoreError
from simtrio.sweep.errors import SweepBusy
from simtrio.sweep.plan import OK, CellAttempt

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sweep_cells (
    sweep TEXT NOT NULL,
    cell_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    run_id TEXT,
    start_slot INTEGER NOT NULL,
    end_slot INTEGER NOT NULL,
    params TEXT NOT NULL,
    result TEXT,
    error TEXT,
    started_at_ns INTEGER NOT NULL,
    duration REAL NOT NULL,
    executor TEXT NOT NULL,
    PRIMARY KEY (sweep, cell_key, attempt)
);
CREATE UNIQUE INDEX IF NOT EXISTS sweep_cells_one_ok
    ON sweep_cells (sweep, cell_key) WHERE outcome = 'ok';
"""
_COLUMNS: Final = (
    "sweep, cell_key, attempt, outcome, run_id, start_slot, end_slot, params, result, error, "
    "started_at_ns, duration, executor"
)
_READING: Final = "cannot read the sweep ledger"


def _loads(text: str | None) -> JsonValue:
    if text is None:
        return None
    try:
        value: JsonValue = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value


class Ledger(SqliteFile):
    """The ``sweep_cells`` table of one store file (opened after the store, which creates it)."""

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Ledger:
        """Open the ledger of an existing run store, adding its table if it is new.

        Raises:
            StoreError: the file cannot be opened or written.
        """
        file = Path(path)
        with store_errors(f"cannot open run store {str(file)!r}"):
            conn = connect(file)
        try:
            with store_errors(f"cannot open the sweep ledger of {str(file)!r}"):
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA synchronous = FULL")
                with write_transaction(conn):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
        except StoreError:
            conn.close()
            raise
        return cls(file, conn)

    def attempts(self, sweep: str) -> list[CellAttempt]:
        """Every recorded attempt of the sweep, by cell and attempt number."""
        with store_errors(_READING):
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM sweep_cells WHERE sweep = ? ORDER BY cell_key, attempt",
                (sweep,),
            ).fetchall()
        return [
            CellAttempt(
                sweep=row[0],
                key=row[1],
                attempt=row[2],
                outcome=row[3],
                run_id=row[4],
                start_slot=row[5],
                end_slot=row[6],
                params=_loads(row[7]),
                result=_loads(row[8]),
                error=row[9],
                started_at_ns=row[10],
                duration=row[11],
                executor=row[12],
            )
            for row in rows
        ]

    def sweeps(self) -> list[str]:
        with store_errors(_READING):
            rows = self._conn.execute("SELECT DISTINCT sweep FROM sweep_cells ORDER BY sweep")
            return [row[0] for row in rows]

    def record(self, row: CellAttempt) -> bool:
        """Add one attempt; False (and nothing written) if the cell already has a success."""
        values = (
            row.sweep,
            row.key,
            row.attempt,
            row.outcome,
            row.run_id,
            row.start_slot,
            row.end_slot,
            orjson.dumps(row.params).decode(),
            None if row.result is None else orjson.dumps(row.result).decode(),
            row.error,
            row.started_at_ns,
            row.duration,
            row.executor,
        )
        with store_errors("cannot write the sweep ledger"):
            try:
                self._conn.execute(
                    f"INSERT INTO sweep_cells ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            except sqlite3.IntegrityError:
                if row.outcome == OK:
                    return False
                raise StoreError(
                    f"attempt {row.attempt} of cell {row.key!r} is already recorded"
                ) from None
        return True


class SweepLock:
    """An exclusive lock on one sweep of one store, released by the kernel if the driver dies."""

    def __init__(self, store_path: Path, sweep: str) -> None:
        digest = hashlib.sha256(sweep.encode()).hexdigest()[:16]
        self.path = store_path.with_name(f"{store_path.name}.sweep-{digest}.lock")
        self._sweep = sweep
        self._fd: int | None = None

    def __enter__(self) -> SweepLock:
        with store_errors(f"cannot create {str(self.path)!r}"):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SweepBusy(
                    f"sweep {self._sweep!r} is already running against {str(self.path.parent)!r}"
                ) from None
        self._fd = fd
        return self

    def __exit__(self, *_: object) -> None:
        # The file stays: unlinking it would let a second driver lock a fresh file while a
        # third still waits on the old one.
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
