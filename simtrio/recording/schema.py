"""The run store's file layout: its SQL schema, the columns it reads, and how a new file is made.

A new store is built in a temporary file and linked into place complete, so a store file is
never seen half-initialised; :func:`check_identity` tells a run store from an empty database and
refuses anything else.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Final

from simtrio.recording.boundary import store_errors
from simtrio.recording.errors import StoreError

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x53696D54  # "SimT": marks the file as a simtrio run store

_SCHEMA: Final = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    parent_run_id TEXT,
    status TEXT NOT NULL,
    create_request TEXT,
    server_url TEXT,
    simtrio_version TEXT NOT NULL,
    started_at_ns INTEGER NOT NULL,
    ended_at_ns INTEGER,
    entry_count INTEGER NOT NULL,
    control_count INTEGER NOT NULL DEFAULT 0,
    data_count INTEGER NOT NULL DEFAULT 0,
    sent_count INTEGER NOT NULL DEFAULT 0,
    head_hash BLOB NOT NULL,
    outcome TEXT,
    problem TEXT
);
CREATE TABLE entries (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    plane TEXT NOT NULL,
    kind TEXT NOT NULL,
    session_id TEXT,
    topic TEXT,
    payload BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX runs_by_status ON runs (status);
"""

_TEXT_MANIFEST_COLUMNS: Final = frozenset(
    {
        "run_id",
        "parent_run_id",
        "status",
        "create_request",
        "server_url",
        "simtrio_version",
        "outcome",
        "problem",
    }
)
MANIFEST_COLUMNS: Final = (
    "run_id, parent_run_id, status, create_request, server_url, simtrio_version, "
    "started_at_ns, ended_at_ns, entry_count, control_count, data_count, sent_count, "
    "head_hash, outcome, problem"
)
ENTRY_COLUMNS: Final = "seq, ts_ns, plane, kind, session_id, topic, payload, hash"
CHECKED_ENTRY_COLUMNS: Final = (
    "seq, ts_ns, CAST(plane AS BLOB), CAST(kind AS BLOB), CAST(session_id AS BLOB), "
    "CAST(topic AS BLOB), typeof(payload), CAST(payload AS BLOB), typeof(hash), "
    "CAST(hash AS BLOB)"
)
"""Entry columns read so that a value of the wrong type or encoding cannot fail the query:
text comes back as bytes (decoded, and checked, in Python), with the storage type of the
binary columns alongside."""
CHECKED_MANIFEST_COLUMNS: Final = ", ".join(
    f"CAST({name} AS BLOB)" if name in _TEXT_MANIFEST_COLUMNS else name
    for name in MANIFEST_COLUMNS.split(", ")
)


def check_identity(conn: sqlite3.Connection, path: Path) -> bool:
    """True for a run store, False for an empty database; StoreError for anything else."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and version == 0 and tables == 0:
        return False
    if app_id != APPLICATION_ID:
        raise StoreError(f"{str(path)!r} is not a simtrio run store")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"run store {str(path)!r} has schema {version}; this simtrio reads "
            f"up to {SCHEMA_VERSION}"
        )
    return True


def create_store_file(file: Path) -> None:
    """Build an empty store beside ``file``, then link it into place (unless one appeared).

    Nobody ever sees the file half-built, so an empty file at a store's path is never mistaken
    for one being created.
    """
    temp = file.with_name(f".{file.name}.{secrets.token_hex(6)}.new")
    try:
        with store_errors(f"cannot create run store {str(file)!r}"):
            _build(temp, file)
            try:
                os.link(temp, file)
            except FileExistsError:
                pass  # created by someone else meanwhile: that one is used
            except OSError:
                if not file.exists():  # a file system without hard links
                    os.rename(temp, file)
    finally:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{temp}{suffix}").unlink()


def _build(temp: Path, file: Path) -> None:
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"run store {str(file)!r} cannot use WAL mode ({mode})")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    finally:
        conn.close()  # checkpoints: the file alone is the whole store
