"""Durable run recording: a SQLite run store, a trio recorder, readers and an offline replay.

* :func:`open_recorder` records one run (control frames, data-plane notifications and the
  requests the client wrote) into a store file, in hash-chained, batched, durable entries;
  ``open_managed_session(..., recorder=)`` / ``open_parallel_session(..., recorder=)`` record
  their whole run with it.
* :func:`list_runs`, :func:`get_run`, :func:`read_entries`, :func:`verify_run` read stores;
  opening a store recovers runs whose recording process died.
* :func:`export_run` / :func:`import_run` move a finished run between stores; an import
  recomputes the hash chain and quarantines (never merges) a run that is not intact.
* :func:`replay_server` serves a recorded run as a backtest server on loopback, so a strategy
  can be regression tested offline and deterministically.
"""

from __future__ import annotations

__all__ = [
    "DecodedEntry",
    "Entry",
    "ImportResult",
    "Plane",
    "RecordingClosed",
    "RecordingError",
    "RecordingFailed",
    "Recorder",
    "RecoveryResult",
    "ReplayDivergence",
    "ReplayServer",
    "RunManifest",
    "RunNotFound",
    "RunStatus",
    "RunStore",
    "RunUnusable",
    "StoreError",
    "VerifyResult",
    "decode_entry",
    "export_run",
    "format_runs_table",
    "get_run",
    "import_run",
    "list_runs",
    "load_replay_script",
    "open_recorder",
    "read_entries",
    "replay_server",
    "runs_to_json",
    "verify_run",
]

from simtrio.recording.errors import (
    RecordingClosed,
    RecordingError,
    RecordingFailed,
    ReplayDivergence,
    RunNotFound,
    RunUnusable,
    StoreError,
)
from simtrio.recording.format import Plane, RunStatus
from simtrio.recording.reader import (
    DecodedEntry,
    decode_entry,
    format_runs_table,
    get_run,
    list_runs,
    load_replay_script,
    read_entries,
    runs_to_json,
    verify_run,
)
from simtrio.recording.recorder import Recorder, open_recorder
from simtrio.recording.records import Entry, RecoveryResult, RunManifest, VerifyResult
from simtrio.recording.replay import ReplayServer, replay_server
from simtrio.recording.store import RunStore
from simtrio.recording.transfer import ImportResult, export_run, import_run
