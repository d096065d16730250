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

The file's layout is in :mod:`~simtrio.recording.schema`, the values in
:mod:`~simtrio.recording.records`, the checked reading of rows in :mod:`~simtrio.recording.rows`
and the chain check in :mod:`~simtrio.recording.verify`; every sqlite3 or OS error becomes a
``StoreError`` through :func:`~simtrio.recording.boundary.store_errors`.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from simtrio.recording.boundary import store_errors
from simtrio.recording.dbfile import (
    BUSY_TIMEOUT_MS,
    SqliteFile,
    connect,
    read_snapshot,
    write_transaction,
)
from simtrio.recording.errors import RunNotFound, RunUnusable, StoreError
from simtrio.recording.format import (
    RUN_ENDED,
    RUN_STARTED,
    Plane,
    RunStatus,
    compress_payload,
    decompress_payload,
    format_ns,
    genesis_hash,
    json_field,
    new_run_id,
    redact_url,
)
from simtrio.recording.records import (
    ActiveRun,
    Entry,
    PendingEntry,
    RecoveryResult,
    RunManifest,
    VerifyResult,
    chain_hash,
)
from simtrio.recording.rows import entry_row, manifest_row, text_column
from simtrio.recording.runlock import RunLock, lock_path
from simtrio.recording.schema import (
    CHECKED_ENTRY_COLUMNS,
    CHECKED_MANIFEST_COLUMNS,
    ENTRY_COLUMNS,
    MANIFEST_COLUMNS,
    check_identity,
    create_store_file,
)
from simtrio.recording.verify import check_run

if TYPE_CHECKING:
    import os
    import sqlite3
    from collections.abc import Iterator, Sequence

    from simtrio.wire.jsontext import JsonValue

logger = logging.getLogger(__name__)


class RunStore(SqliteFile):
    """One run store file. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        super().__init__(path, conn)
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

        A missing file is created (complete, see :mod:`~simtrio.recording.schema`) unless
        ``create`` is False; an existing one must already be a run store.

        Raises:
            StoreError: the file is missing (``create=False``), empty, not a run store, written
                by a newer schema, or cannot be read.
        """
        file = Path(path)
        opening = f"cannot open run store {str(file)!r}"
        with store_errors(opening):
            try:
                size: int | None = file.stat().st_size
            except FileNotFoundError:
                size = None
        if size is None:
            if not create:
                raise StoreError(f"no run store at {str(file)!r}")
            create_store_file(file)
        elif size == 0:
            raise StoreError(f"{str(file)!r} is an empty file, not a simtrio run store")
        with store_errors(opening):
            conn = connect(file)
        store = cls(file, conn)
        try:
            store._setup()
            if recover:
                store.recovered = tuple(store.recover())
        except BaseException:
            conn.close()
            raise
        return store

    def _setup(self) -> None:
        with store_errors(f"cannot open run store {str(self.path)!r}"):
            conn = self._conn
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Identify the file before changing anything about it.
            if not check_identity(conn, self.path):
                raise StoreError(f"{str(self.path)!r} is an empty database, not a run store")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")

    def _lock_for(self, run_id: str) -> RunLock:
        return RunLock(lock_path(self.path, run_id))

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
        with store_errors(f"cannot lock run {run_id}"):
            if parent_run_id is not None:
                parent = self._manifest_or_none(parent_run_id)
                if parent is not None and parent.status is RunStatus.QUARANTINED:
                    raise RunUnusable(f"run {parent_run_id} is quarantined and cannot be a parent")
            lock = self._lock_for(run_id)
            if not lock.acquire():
                raise StoreError(f"run {run_id} is already being recorded")
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
            with store_errors(f"cannot start run {run_id}"), write_transaction(self._conn):
                self._conn.execute(
                    f"INSERT INTO runs ({MANIFEST_COLUMNS}) "
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
        with store_errors(f"cannot write run {run.run_id}"), write_transaction(self._conn):
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
            f"INSERT INTO entries (run_id, {ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, *e.head(), compress_payload(e.payload), h) for e, h in rows],
        )

    # -- reading ---------------------------------------------------------------------------

    def list_runs(self) -> list[RunManifest]:
        """Every run, oldest first (run ids sort by start time)."""
        with store_errors(self._reading):
            rows = self._conn.execute(
                f"SELECT {CHECKED_MANIFEST_COLUMNS} FROM runs ORDER BY run_id"
            ).fetchall()
        return [manifest_row(row) for row in rows]

    def get_run(self, run_id: str) -> RunManifest:
        """The manifest of one run.

        Raises:
            RunNotFound: no such run.
        """
        manifest = self._manifest_or_none(run_id)
        if manifest is None:
            raise RunNotFound(f"no run {run_id!r} in {str(self.path)!r}")
        return manifest

    @property
    def _reading(self) -> str:
        return f"cannot read run store {str(self.path)!r}"

    def _manifest_or_none(self, run_id: str) -> RunManifest | None:
        with store_errors(self._reading):
            row = self._conn.execute(
                f"SELECT {CHECKED_MANIFEST_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else manifest_row(row)

    def _entry_rows(self, run_id: str) -> sqlite3.Cursor:
        return self._conn.execute(
            f"SELECT {CHECKED_ENTRY_COLUMNS} FROM entries WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )

    def iter_entries(self, run_id: str) -> Iterator[Entry]:
        """The run's entries in sequence order, payloads decompressed.

        Raises:
            RunNotFound: no such run.
            StoreError: an entry cannot be read (use :meth:`verify` to locate damage).
        """
        self.get_run(run_id)
        with store_errors(f"cannot read run {run_id}"):
            for row in self._entry_rows(run_id):
                try:
                    seq, ts_ns, plane, kind, session_id, topic, stored, stored_hash = entry_row(row)
                    payload = decompress_payload(stored)
                except ValueError as exc:
                    raise StoreError(f"run {run_id}: entry {row[0]} is unreadable: {exc}") from None
                yield Entry(seq, ts_ns, Plane(plane), kind, session_id, topic, payload, stored_hash)

    # -- verification and recovery ---------------------------------------------------------

    def verify(self, run_id: str, *, quarantine: bool = True) -> VerifyResult:
        """Check the chain, the sequence (no gap) and the manifest's head; quarantine if broken.

        Raises:
            RunNotFound: no such run.
        """
        with store_errors(f"cannot read run {run_id}"), read_snapshot(self._conn):
            manifest = self.get_run(run_id)
            rows = () if manifest.malformed else self._entry_rows(run_id)
            result = check_run(manifest, rows)
        if not result.intact and quarantine and manifest.status is not RunStatus.QUARANTINED:
            self._set_status(run_id, RunStatus.QUARANTINED, problem=result.problem)
        return result

    def recover(self) -> list[RecoveryResult]:
        """Close every RUNNING run whose recorder is gone (see the module docstring)."""
        with store_errors(self._reading):
            running = [
                row[0]
                for row in self._conn.execute(
                    "SELECT CAST(run_id AS BLOB) FROM runs WHERE status = ? ORDER BY run_id",
                    (RunStatus.RUNNING.value,),
                )
            ]
        results: list[RecoveryResult] = []
        for raw_id in running:
            try:
                run_id = text_column(raw_id, "run_id")
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
        with store_errors(f"cannot update run {run_id}"), write_transaction(self._conn):
            return self._conn.execute(sql, params).rowcount == 1

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
        with store_errors(f"cannot import run {manifest.run_id}"), write_transaction(self._conn):
            if self._manifest_or_none(manifest.run_id) is not None:
                raise StoreError(f"run {manifest.run_id} is already in {str(self.path)!r}")
            self._conn.execute(
                f"INSERT INTO runs ({MANIFEST_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                manifest.columns(),
            )
            self._insert(manifest.run_id, [(e, e.hash) for e in entries])
