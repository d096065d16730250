"""The run store: one SQLite file (WAL) holding run manifests and their hash-chained entries.

Plain blocking code with no trio import: the recorder calls it from a worker thread, the CLI
calls it directly. Every write is one ``BEGIN IMMEDIATE`` transaction that inserts a batch of
entries *and* moves the run's manifest (entry count, head hash, counters) forward, so the
manifest always describes exactly the committed entries, whatever moment a process dies at.

Opening a store runs the recovery sweep: every run still ``RUNNING`` whose recorder is not alive
(its per-run lock file is not held) is verified and closed as ``ENDED`` (it has ``run.ended``),
``CRASHED_RECOVERED`` (intact without it) or ``QUARANTINED`` (broken chain or gap). One damaged
run never locks the store: an entry or manifest row of the wrong type or encoding is damage of
that run (it is quarantined), and the rest of the store keeps working.

A new store is built in a temporary file and linked into place complete, so a store file is
never seen half-initialised; an existing file that is not a run store (an empty file included)
is refused, never initialised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import orjson

from simtrio.recording.errors import RunNotFound, RunUnusable, StoreError
from simtrio.recording.format import (
    RUN_ENDED,
    RUN_STARTED,
    Plane,
    RunStatus,
    compress_payload,
    decompress_payload,
    entry_hash,
    format_ns,
    genesis_hash,
    json_field,
    new_run_id,
    redact_url,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator, Sequence

    from simtrio.wire.jsontext import JsonValue

__all__ = [
    "SCHEMA_VERSION",
    "ActiveRun",
    "Entry",
    "PendingEntry",
    "RecoveryResult",
    "RunManifest",
    "RunStore",
    "VerifyResult",
    "chain_hash",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x53696D54  # "SimT": marks the file as a simtrio run store
_BUSY_TIMEOUT_MS: Final = 10_000

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
_MANIFEST_COLUMNS: Final = (
    "run_id, parent_run_id, status, create_request, server_url, simtrio_version, "
    "started_at_ns, ended_at_ns, entry_count, control_count, data_count, sent_count, "
    "head_hash, outcome, problem"
)
_ENTRY_COLUMNS: Final = "seq, ts_ns, plane, kind, session_id, topic, payload, hash"
_CHECKED_ENTRY_COLUMNS: Final = (
    "seq, ts_ns, CAST(plane AS BLOB), CAST(kind AS BLOB), CAST(session_id AS BLOB), "
    "CAST(topic AS BLOB), typeof(payload), CAST(payload AS BLOB), typeof(hash), "
    "CAST(hash AS BLOB)"
)
"""Entry columns read so that a value of the wrong type or encoding cannot fail the query:
text comes back as bytes (decoded, and checked, in Python), with the storage type of the
binary columns alongside."""
_CHECKED_MANIFEST_COLUMNS: Final = ", ".join(
    f"CAST({name} AS BLOB)" if name in _TEXT_MANIFEST_COLUMNS else name
    for name in _MANIFEST_COLUMNS.split(", ")
)
_HASH_SIZE: Final = 32


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@attrs.frozen
class RunManifest:
    """What a run is: identity, lineage, status, parameters and counters."""

    run_id: str
    parent_run_id: str | None
    status: RunStatus
    create_request: str | None
    """The canonical ``createBacktestSession`` text the run was created with."""
    server_url: str | None
    """Without user info or query string: never a credential."""
    simtrio_version: str
    started_at_ns: int
    ended_at_ns: int | None
    entry_count: int
    control_count: int
    data_count: int
    sent_count: int
    head_hash: bytes = attrs.field(repr=False)
    outcome: str | None
    """``completed``, ``error:<ExceptionType>``, ``cancelled`` or ``crashed``."""
    problem: str | None
    """Why a run was quarantined (or stopped, for a run whose writer failed)."""
    malformed: bool = attrs.field(default=False, repr=False)
    """The stored manifest row itself is damaged; the run is shown as ``QUARANTINED``."""

    @property
    def create_params(self) -> JsonValue:
        """The create request's ``params`` object, or None."""
        if self.create_request is None:
            return None
        try:
            request: JsonValue = orjson.loads(self.create_request)
        except orjson.JSONDecodeError:
            return None
        return json_field(request, "params")

    def to_json(self) -> dict[str, JsonValue]:
        """A JSON-ready view (used by ``simtrio runs list --json``)."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "parent_run_id": self.parent_run_id,
            "started_at": format_ns(self.started_at_ns),
            "ended_at": format_ns(self.ended_at_ns),
            "server_url": self.server_url,
            "simtrio_version": self.simtrio_version,
            "create_params": self.create_params,
            "entries": self.entry_count,
            "control_entries": self.control_count,
            "data_entries": self.data_count,
            "sent_entries": self.sent_count,
            "outcome": self.outcome,
            "problem": self.problem,
            "head_hash": self.head_hash.hex(),
        }


@attrs.frozen
class PendingEntry:
    """An entry handed to :meth:`RunStore.append`; ``payload`` is the uncompressed wire text."""

    seq: int
    ts_ns: int
    plane: Plane
    kind: str
    session_id: str | None
    topic: str | None
    payload: bytes = attrs.field(repr=False)


@attrs.frozen
class Entry:
    """A stored entry as read back (payload decompressed)."""

    seq: int
    ts_ns: int
    plane: Plane
    kind: str
    session_id: str | None
    topic: str | None
    payload: bytes = attrs.field(repr=False)
    hash: bytes = attrs.field(repr=False)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@attrs.frozen
class VerifyResult:
    """Outcome of checking one run's chain, sequence and manifest."""

    run_id: str
    intact: bool
    entries: int
    """Entries checked before the first problem (all of them when intact)."""
    ended: bool
    """The last entry is ``run.ended``."""
    problem: str | None = None
    bad_seq: int | None = None


@attrs.frozen
class RecoveryResult:
    """What the recovery sweep did with one run left ``RUNNING``."""

    run_id: str
    status: RunStatus
    entries: int
    problem: str | None = None


@attrs.define
class ActiveRun:
    """Writer-side state of a run being recorded (owned by exactly one writer)."""

    run_id: str
    next_seq: int
    head_hash: bytes
    _lock: _RunLock | None = attrs.field(repr=False)
    control_count: int = 0
    data_count: int = 0
    sent_count: int = 0
    ended: bool = False


# --------------------------------------------------------------------------------------------
# Liveness: one lock file per recording run (released by the kernel if the process dies)
# --------------------------------------------------------------------------------------------


class _RunLock:
    """An exclusive ``flock`` on ``<store>.locks/<run_id>.lock``.

    ``flock`` locks belong to an open file description, so a sweep in the same process as a
    live recorder sees the run as live too; a killed process releases its locks at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another recorder holds it."""
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


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class RunStore:
    """One run store file. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self.recovered: tuple[RecoveryResult, ...] = ()
        """What the recovery sweep of :meth:`open` did."""

    def __repr__(self) -> str:
        return f"<RunStore {str(self.path)!r}>"

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, create: bool = True, recover: bool = True
    ) -> RunStore:
        """Open (or create) a store and run the recovery sweep.

        A missing file is created (complete, see the module docstring) unless ``create`` is
        False; an existing one must already be a run store.

        Raises:
            StoreError: the file is missing (``create=False``), empty, not a run store, written
                by a newer schema, or cannot be read.
        """
        file = Path(path)
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            if not create:
                raise StoreError(f"no run store at {str(file)!r}") from None
            _create_store_file(file)
        except OSError as exc:
            raise StoreError(f"cannot open run store {str(file)!r}: {exc}") from None
        else:
            if size == 0:
                raise StoreError(f"{str(file)!r} is an empty file, not a simtrio run store")
        try:
            conn = sqlite3.connect(
                file, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {str(file)!r}: {exc}") from None
        store = cls(file, conn)
        try:
            store._setup()
            if recover:
                store.recovered = tuple(store.recover())
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _setup(self) -> None:
        try:
            conn = self._conn
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Identify the file before changing anything about it.
            if not self._check_identity():
                raise StoreError(f"{str(self.path)!r} is an empty database, not a run store")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {str(self.path)!r}: {exc}") from None

    def _check_identity(self) -> bool:
        """True for a run store, False for an empty file; StoreError for anything else."""
        conn = self._conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and tables == 0:
            return False
        if app_id != APPLICATION_ID:
            raise StoreError(f"{str(self.path)!r} is not a simtrio run store")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"run store {str(self.path)!r} has schema {version}; this simtrio reads "
                f"up to {SCHEMA_VERSION}"
            )
        return True

    @contextlib.contextmanager
    def _write(self) -> Generator[None]:
        """One immediate transaction: committed on success, rolled back on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Generator[None]:
        """One read transaction, so several queries see the same snapshot."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("COMMIT")

    def _lock_for(self, run_id: str) -> _RunLock:
        return _RunLock(self.path.with_name(self.path.name + ".locks") / f"{run_id}.lock")

    # -- writing ---------------------------------------------------------------------------

    def begin_run(
        self,
        *,
        create_request: str | None,
        server_url: str | None,
        simtrio_version: str,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        now_ns: int | None = None,
    ) -> ActiveRun:
        """Create a RUNNING run and commit its ``run.started`` entry before returning.

        Raises:
            RunUnusable: the parent run is quarantined.
            StoreError: the run could not be written.
        """
        ts = time.time_ns() if now_ns is None else now_ns
        run_id = run_id or new_run_id(ts)
        url = redact_url(server_url)
        try:
            if parent_run_id is not None:
                parent = self._manifest_or_none(parent_run_id)
                if parent is not None and parent.status is RunStatus.QUARANTINED:
                    raise RunUnusable(f"run {parent_run_id} is quarantined and cannot be a parent")
            lock = self._lock_for(run_id)
            if not lock.acquire():
                raise StoreError(f"run {run_id} is already being recorded")
        except OSError as exc:
            raise StoreError(f"cannot lock run {run_id}: {exc}") from None
        create_params: JsonValue = None
        if create_request is not None:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed: JsonValue = orjson.loads(create_request)
                create_params = json_field(parsed, "params")
        payload = orjson.dumps(
            {
                "run_id": run_id,
                "parent_run_id": parent_run_id,
                "server_url": url,
                "simtrio_version": simtrio_version,
                "started_at": format_ns(ts),
                "create_params": create_params,
            }
        )
        first = PendingEntry(1, ts, Plane.RUN, RUN_STARTED, None, None, payload)
        head = chain_hash(genesis_hash(run_id), first)
        try:
            with self._write():
                self._conn.execute(
                    f"INSERT INTO runs ({_MANIFEST_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 1, 0, 0, 0, ?, NULL, NULL)",
                    (
                        run_id,
                        parent_run_id,
                        RunStatus.RUNNING.value,
                        create_request,
                        url,
                        simtrio_version,
                        ts,
                        head,
                    ),
                )
                self._insert(run_id, [(first, head)])
        except (sqlite3.Error, OSError) as exc:
            lock.release()
            raise StoreError(f"cannot start run {run_id}: {exc}") from None
        except BaseException:
            lock.release()
            raise
        return ActiveRun(run_id, 2, head, lock)

    def append(
        self, run: ActiveRun, entries: Sequence[PendingEntry], *, outcome: str | None = None
    ) -> None:
        """Commit a batch; a batch ending in ``run.ended`` also marks the run ENDED.

        The run's in-memory state moves forward only after the commit, so a failed batch can
        be retried or reported without a hole in the chain.

        Raises:
            StoreError: the batch could not be committed (I/O error, disk full, or the run is no
                longer RUNNING because a sweep closed it).
        """
        if not entries:
            return
        if run.ended:
            raise StoreError(f"run {run.run_id} has already ended")
        rows: list[tuple[PendingEntry, bytes]] = []
        head = run.head_hash
        seq = run.next_seq
        counts = {Plane.CONTROL: 0, Plane.DATA: 0, Plane.SENT: 0}
        ended = False
        for entry in entries:
            if entry.seq != seq:
                raise StoreError(
                    f"run {run.run_id}: entry {entry.seq} out of order (expected {seq})"
                )
            if ended:
                raise StoreError(f"run {run.run_id}: entries after run.ended")
            head = chain_hash(head, entry)
            rows.append((entry, head))
            if entry.plane in counts:
                counts[entry.plane] += 1
            ended = entry.plane is Plane.RUN and entry.kind == RUN_ENDED
            seq += 1
        last = entries[-1]
        try:
            with self._write():
                self._insert(run.run_id, rows)
                cursor = self._conn.execute(
                    "UPDATE runs SET entry_count = ?, head_hash = ?, control_count = ?, "
                    "data_count = ?, sent_count = ?, status = ?, ended_at_ns = ?, outcome = ? "
                    "WHERE run_id = ? AND status = ?",
                    (
                        seq - 1,
                        head,
                        run.control_count + counts[Plane.CONTROL],
                        run.data_count + counts[Plane.DATA],
                        run.sent_count + counts[Plane.SENT],
                        (RunStatus.ENDED if ended else RunStatus.RUNNING).value,
                        last.ts_ns if ended else None,
                        outcome if ended else None,
                        run.run_id,
                        RunStatus.RUNNING.value,
                    ),
                )
                if cursor.rowcount != 1:
                    raise StoreError(f"run {run.run_id} is no longer RUNNING")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write run {run.run_id}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot write run {run.run_id}: {exc}") from None
        run.next_seq = seq
        run.head_hash = head
        run.control_count += counts[Plane.CONTROL]
        run.data_count += counts[Plane.DATA]
        run.sent_count += counts[Plane.SENT]
        run.ended = ended

    def stop_run(self, run: ActiveRun, *, problem: str) -> bool:
        """Close a RUNNING run whose writer failed (a full disk, say) with outcome ``error``.

        What was committed is intact but has no ``run.ended``, so the status is
        ``CRASHED_RECOVERED``; ``outcome`` says it was an error, not a crash, and ``problem``
        why. One small update, so it usually still fits where a batch did not; returns False
        when the run was no longer RUNNING.

        Raises:
            StoreError: not even that update could be written (the next sweep closes the run).
        """
        return self._set_status(
            run.run_id,
            RunStatus.CRASHED_RECOVERED,
            problem=problem,
            outcome="error",
            only_running=True,
        )

    def release(self, run: ActiveRun) -> None:
        """Give up the run's liveness lock (after its last batch, or after a failure)."""
        lock, run._lock = run._lock, None  # pyright: ignore[reportPrivateUsage]
        if lock is not None:
            lock.release()

    def _insert(self, run_id: str, rows: Sequence[tuple[PendingEntry, bytes]]) -> None:
        self._conn.executemany(
            f"INSERT INTO entries (run_id, {_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    e.seq,
                    e.ts_ns,
                    e.plane.value,
                    e.kind,
                    e.session_id,
                    e.topic,
                    compress_payload(e.payload),
                    h,
                )
                for e, h in rows
            ],
        )

    # -- reading ---------------------------------------------------------------------------

    def list_runs(self) -> list[RunManifest]:
        """Every run, oldest first (run ids sort by start time)."""
        try:
            rows = self._conn.execute(
                f"SELECT {_CHECKED_MANIFEST_COLUMNS} FROM runs ORDER BY run_id"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run store {str(self.path)!r}: {exc}") from None
        return [_manifest(row) for row in rows]

    def get_run(self, run_id: str) -> RunManifest:
        """The manifest of one run.

        Raises:
            RunNotFound: no such run.
        """
        manifest = self._manifest_or_none(run_id)
        if manifest is None:
            raise RunNotFound(f"no run {run_id!r} in {str(self.path)!r}")
        return manifest

    def _manifest_or_none(self, run_id: str) -> RunManifest | None:
        try:
            row = self._conn.execute(
                f"SELECT {_CHECKED_MANIFEST_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run store {str(self.path)!r}: {exc}") from None
        return None if row is None else _manifest(row)

    def iter_entries(self, run_id: str) -> Iterator[Entry]:
        """The run's entries in sequence order, payloads decompressed.

        Raises:
            RunNotFound: no such run.
            StoreError: an entry cannot be read (use :meth:`verify` to locate damage).
        """
        self.get_run(run_id)
        try:
            cursor = self._conn.execute(
                f"SELECT {_CHECKED_ENTRY_COLUMNS} FROM entries WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
            for row in cursor:
                try:
                    seq, ts_ns, plane, kind, session_id, topic, stored, stored_hash = _entry_row(
                        row
                    )
                    payload = decompress_payload(stored)
                except ValueError as exc:
                    raise StoreError(f"run {run_id}: entry {row[0]} is unreadable: {exc}") from None
                yield Entry(seq, ts_ns, Plane(plane), kind, session_id, topic, payload, stored_hash)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run {run_id}: {exc}") from None

    # -- verification and recovery ---------------------------------------------------------

    def verify(self, run_id: str, *, quarantine: bool = True) -> VerifyResult:
        """Check the chain, the sequence (no gap) and the manifest's head; quarantine if broken.

        Raises:
            RunNotFound: no such run.
        """
        try:
            with self._read():
                manifest = self.get_run(run_id)
                result = self._check(manifest)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run {run_id}: {exc}") from None
        if not result.intact and quarantine and manifest.status is not RunStatus.QUARANTINED:
            self._set_status(run_id, RunStatus.QUARANTINED, problem=result.problem)
        return result

    def _check(self, manifest: RunManifest) -> VerifyResult:
        run_id = manifest.run_id
        head = genesis_hash(run_id)
        expected = 1
        ended = False

        def broken(problem: str, seq: int) -> VerifyResult:
            return VerifyResult(run_id, False, expected - 1, ended, problem, seq)

        if manifest.malformed:
            return VerifyResult(run_id, False, 0, False, manifest.problem, None)
        cursor = self._conn.execute(
            f"SELECT {_CHECKED_ENTRY_COLUMNS} FROM entries WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        for row in cursor:
            if type(row[0]) is not int:
                return broken(f"entry {expected} has a sequence number that is not one", expected)
            if row[0] != expected:
                return broken(f"entry {expected} is missing (next is {row[0]})", expected)
            try:
                seq, ts_ns, plane, kind, session_id, topic, stored, stored_hash = _entry_row(row)
            except ValueError as exc:
                return broken(f"entry {expected} is malformed: {exc}", expected)
            if ended:
                return broken(f"entry {seq} follows run.ended", seq)
            try:
                payload = decompress_payload(stored)
            except ValueError as exc:
                return broken(f"entry {seq} is unreadable: {exc}", seq)
            head = entry_hash(
                head,
                seq=seq,
                ts_ns=ts_ns,
                plane=plane,
                kind=kind,
                session_id=session_id,
                topic=topic,
                payload=payload,
            )
            if head != stored_hash:
                return broken(f"entry {seq} does not match its hash (modified)", seq)
            if seq == 1 and (plane != Plane.RUN.value or kind != RUN_STARTED):
                return broken("the first entry is not run.started", seq)
            ended = plane == Plane.RUN.value and kind == RUN_ENDED
            expected += 1
        count = expected - 1
        if count == 0:
            return VerifyResult(run_id, False, 0, False, "the run has no entries", 1)
        if count != manifest.entry_count or head != manifest.head_hash:
            return VerifyResult(
                run_id,
                False,
                count,
                ended,
                f"the run has {count} entries but its manifest records {manifest.entry_count} "
                "(entries removed or added)",
                min(count, manifest.entry_count) + 1,
            )
        if manifest.status is RunStatus.ENDED and not ended:
            return VerifyResult(run_id, False, count, ended, "ENDED run lacks run.ended", count)
        return VerifyResult(run_id, True, count, ended)

    def recover(self) -> list[RecoveryResult]:
        """Close every RUNNING run whose recorder is gone (see the module docstring)."""
        try:
            running = [
                row[0]
                for row in self._conn.execute(
                    "SELECT CAST(run_id AS BLOB) FROM runs WHERE status = ? ORDER BY run_id",
                    (RunStatus.RUNNING.value,),
                )
            ]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run store {str(self.path)!r}: {exc}") from None
        results: list[RecoveryResult] = []
        for raw_id in running:
            try:
                run_id = _text(raw_id, "run_id")
            except ValueError as exc:
                logger.warning("cannot recover a run: %s", exc)
                continue
            if run_id is None:
                continue
            lock = self._lock_for(run_id)
            try:
                if not lock.acquire():
                    continue  # its recorder is alive
            except OSError as exc:
                logger.warning("cannot check whether run %s is live: %s", run_id, exc)
                continue
            try:
                result = self._recover_one(run_id)
            except StoreError as exc:
                # This run cannot be read or closed now: it must not keep the store from opening.
                logger.warning("cannot recover run %s: %s", run_id, exc)
                continue
            finally:
                lock.release()
            if result is not None:
                logger.info("recovered run %s as %s", run_id, result.status.value)
                results.append(result)
        return results

    def _recover_one(self, run_id: str) -> RecoveryResult | None:
        verdict = self.verify(run_id, quarantine=False)
        if not verdict.intact:
            status, outcome = RunStatus.QUARANTINED, None
        elif verdict.ended:
            status, outcome = RunStatus.ENDED, self._ended_outcome(run_id)
        else:
            status, outcome = RunStatus.CRASHED_RECOVERED, "crashed"
        changed = self._set_status(
            run_id, status, problem=verdict.problem, outcome=outcome, only_running=True
        )
        return RecoveryResult(run_id, status, verdict.entries, verdict.problem) if changed else None

    def _ended_outcome(self, run_id: str) -> str | None:
        row = self._conn.execute(
            "SELECT payload FROM entries WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
        ).fetchone()
        try:
            payload: JsonValue = orjson.loads(decompress_payload(row[0]))
        except (ValueError, TypeError):
            return None
        outcome = json_field(payload, "outcome")
        return outcome if isinstance(outcome, str) else None

    def _set_status(
        self,
        run_id: str,
        status: RunStatus,
        *,
        problem: str | None = None,
        outcome: str | None = None,
        only_running: bool = False,
    ) -> bool:
        last_ts = "(SELECT max(ts_ns) FROM entries WHERE entries.run_id = runs.run_id)"
        sql = (
            "UPDATE runs SET status = ?, problem = ?, outcome = coalesce(?, outcome), "
            f"ended_at_ns = coalesce(ended_at_ns, {last_ts}) WHERE run_id = ?"
        )
        params: list[object] = [status.value, problem, outcome, run_id]
        if only_running:
            sql += " AND status = ?"
            params.append(RunStatus.RUNNING.value)
        try:
            with self._write():
                changed = self._conn.execute(sql, params).rowcount == 1
        except sqlite3.Error as exc:
            raise StoreError(f"cannot update run {run_id}: {exc}") from None
        return changed

    # -- import ----------------------------------------------------------------------------

    def adopt_run(self, manifest: RunManifest, entries: Sequence[Entry]) -> None:
        """Insert a finished run recorded elsewhere, verbatim, in one transaction.

        The caller has verified the run (:func:`simtrio.recording.import_run` does); this only
        refuses what would corrupt the store: a run id already present, or a run that is not
        finished.

        Raises:
            StoreError: the run id exists, the run is not finished, or the write failed.
        """
        if manifest.status not in (RunStatus.ENDED, RunStatus.CRASHED_RECOVERED):
            raise StoreError(f"run {manifest.run_id} is {manifest.status.value}, not finished")
        rows = [
            (
                PendingEntry(e.seq, e.ts_ns, e.plane, e.kind, e.session_id, e.topic, e.payload),
                e.hash,
            )
            for e in entries
        ]
        try:
            with self._write():
                if self._manifest_or_none(manifest.run_id) is not None:
                    raise StoreError(f"run {manifest.run_id} is already in {str(self.path)!r}")
                self._conn.execute(
                    f"INSERT INTO runs ({_MANIFEST_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        manifest.run_id,
                        manifest.parent_run_id,
                        manifest.status.value,
                        manifest.create_request,
                        manifest.server_url,
                        manifest.simtrio_version,
                        manifest.started_at_ns,
                        manifest.ended_at_ns,
                        manifest.entry_count,
                        manifest.control_count,
                        manifest.data_count,
                        manifest.sent_count,
                        manifest.head_hash,
                        manifest.outcome,
                        manifest.problem,
                    ),
                )
                self._insert(manifest.run_id, rows)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot import run {manifest.run_id}: {exc}") from None


def chain_hash(previous: bytes, entry: PendingEntry | Entry) -> bytes:
    """The hash that chains ``entry`` onto the entry hashed ``previous``."""
    return entry_hash(
        previous,
        seq=entry.seq,
        ts_ns=entry.ts_ns,
        plane=entry.plane.value,
        kind=entry.kind,
        session_id=entry.session_id,
        topic=entry.topic,
        payload=entry.payload,
    )


def _text(value: object, name: str) -> str | None:
    """A text column read as bytes (or str): None stays None; ValueError if it is not text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{name} is not UTF-8 text") from None
    raise ValueError(f"{name} is not text")


def _entry_row(
    row: Sequence[object],
) -> tuple[int, int, str, str, str | None, str | None, bytes, bytes]:
    """One row of ``_CHECKED_ENTRY_COLUMNS`` as typed values; ValueError names what is wrong."""
    seq, ts_ns, plane, kind, session_id, topic, payload_type, payload, hash_type, digest = row
    if type(seq) is not int or type(ts_ns) is not int:
        raise ValueError("its sequence number or time is not an integer")
    plane_text = _text(plane, "plane")
    kind_text = _text(kind, "kind")
    if plane_text not in _PLANES or kind_text is None:
        raise ValueError(f"unknown plane {plane_text!r}" if kind_text else "it has no kind")
    if payload_type != "blob" or not isinstance(payload, bytes):
        raise ValueError(f"its payload is stored as {payload_type}, not binary")
    if hash_type != "blob" or not isinstance(digest, bytes) or len(digest) != _HASH_SIZE:
        raise ValueError("its hash is not a 32-byte binary value")
    return (
        seq,
        ts_ns,
        plane_text,
        kind_text,
        _text(session_id, "session_id"),
        _text(topic, "topic"),
        payload,
        digest,
    )


_PLANES: Final = frozenset(plane.value for plane in Plane)
_MALFORMED: Final = "the run's manifest row is malformed"


def _manifest(row: Sequence[object]) -> RunManifest:
    """A manifest row (text columns as str or bytes); a damaged row gives a QUARANTINED view."""
    problems: list[str] = []

    def text(value: object, name: str, *, required: bool = False) -> str | None:
        try:
            out = _text(value, name)
        except ValueError as exc:
            problems.append(str(exc))
            if isinstance(value, bytes):
                return value.decode("utf-8", errors="replace")
            return None
        if out is None and required:
            problems.append(f"{name} is missing")
        return out

    def number(value: object, name: str, *, required: bool = True) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value is None and not required:
            return None
        problems.append(f"{name} is not an integer")
        return None

    (
        run_id,
        parent,
        status,
        create_request,
        url,
        version,
        started,
        ended,
        entries,
        controls,
        datas,
        sents,
        head,
        outcome,
        problem,
    ) = row
    status_text = text(status, "status", required=True)
    try:
        run_status = RunStatus(status_text or "")
    except ValueError:
        problems.append(f"status {status_text!r} is not a run status")
        run_status = RunStatus.QUARANTINED
    if not isinstance(head, bytes):
        problems.append("head_hash is not binary")
    manifest = RunManifest(
        run_id=text(run_id, "run_id", required=True) or "",
        parent_run_id=text(parent, "parent_run_id"),
        status=run_status,
        create_request=text(create_request, "create_request"),
        server_url=text(url, "server_url"),
        simtrio_version=text(version, "simtrio_version", required=True) or "",
        started_at_ns=number(started, "started_at_ns") or 0,
        ended_at_ns=number(ended, "ended_at_ns", required=False),
        entry_count=number(entries, "entry_count") or 0,
        control_count=number(controls, "control_count") or 0,
        data_count=number(datas, "data_count") or 0,
        sent_count=number(sents, "sent_count") or 0,
        head_hash=head if isinstance(head, bytes) else b"",
        outcome=text(outcome, "outcome"),
        problem=text(problem, "problem"),
    )
    if not problems:
        return manifest
    return attrs.evolve(
        manifest,
        status=RunStatus.QUARANTINED,
        problem=f"{_MALFORMED}: {'; '.join(problems)}",
        malformed=True,
    )


def _create_store_file(file: Path) -> None:
    """Build an empty store beside ``file``, then link it into place (unless one appeared).

    Nobody ever sees the file half-built, so an empty file at a store's path is never mistaken
    for one being created.
    """
    temp = file.with_name(f".{file.name}.{secrets.token_hex(6)}.new")
    try:
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
        try:
            os.link(temp, file)
        except FileExistsError:
            pass  # created by someone else meanwhile: that one is used
        except OSError:
            if not file.exists():  # a file system without hard links
                os.rename(temp, file)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot create run store {str(file)!r}: {exc}") from None
    finally:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{temp}{suffix}").unlink()
