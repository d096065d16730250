"""``simtrio runs``: list, show and verify the runs of a run store.

Opening a store runs its recovery sweep (runs left RUNNING by a dead process are closed), and
``verify`` quarantines a run whose hash chain is broken: both are the store's own rules.
"""

from __future__ import annotations

__all__: list[str] = []

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from simtrio.cli import runs_transfer
from simtrio.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandInfo, add_json_flag
from simtrio.cli.console import render_table
from simtrio.cli.output import json_object, write_json
from simtrio.cli.recorded import summarize_recording
from simtrio.cli.report import render_summary
from simtrio.cli.runfile import RunFileError
from simtrio.errors import SimtrioError

if TYPE_CHECKING:
    import argparse

    from simtrio.recording.records import RunManifest, VerifyResult
    from simtrio.recording.store import RunStore


INFO: Final = CommandInfo(
    name="runs",
    help="inspect recorded runs (list, show, verify, export, import)",
)
"""The command's name and what ``--help`` says of it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the runs of a store")
    ls.add_argument("db", metavar="DB", type=Path)
    add_json_flag(ls, "a JSON array")
    show = actions.add_parser("show", help="show one run and its summary")
    show.add_argument("db", metavar="DB", type=Path)
    show.add_argument("run_id", metavar="RUN_ID")
    add_json_flag(show, "one JSON object")
    verify = actions.add_parser(
        "verify", help="check the hash chain of one run or of all (exit 1 if any is broken)"
    )
    verify.add_argument("db", metavar="DB", type=Path)
    verify.add_argument("run_id", metavar="RUN_ID", nargs="?")
    add_json_flag(verify, "a JSON array")
    for parser in (ls, show, verify):
        parser.set_defaults(handler=command, usage_parser=parser)
    runs_transfer.add_actions(actions)


def _slots(manifest: RunManifest) -> str | None:
    params = json_object(manifest.create_params)
    if params is None:
        return None
    start, end = params.get("startSlot"), params.get("endSlot")
    if isinstance(start, int) and isinstance(end, int):
        return f"{start}-{end}"
    return None


def render_runs(manifests: list[RunManifest]) -> str:
    if not manifests:
        return "no runs"
    headers = ("RUN-ID", "STATUS", "OUTCOME", "SLOTS", "ENTRIES", "STARTED", "SERVER")
    rows: list[list[Any]] = []
    for m in manifests:
        data = m.to_json()
        rows.append(
            [
                m.run_id,
                m.status.value,
                m.outcome,
                _slots(m),
                m.entry_count,
                data["started_at"],
                m.server_url,
            ]
        )
    return render_table(headers, rows)


def _show_lines(manifest: RunManifest) -> list[str]:
    data = manifest.to_json()
    keys = ("run_id", "status", "outcome", "problem", "parent_run_id", "started_at", "ended_at",
            "server_url", "simtrio_version", "entries", "control_entries", "data_entries",
            "sent_entries", "head_hash")  # fmt: skip
    width = max(len(k) for k in keys)
    lines = [f"{key.ljust(width)}  {data[key]}" for key in keys if data.get(key) is not None]
    if manifest.create_request is not None:
        lines.append(f"{'create'.ljust(width)}  {manifest.create_request}")
    return lines


def verify_json(result: VerifyResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "intact": result.intact,
        "entries": result.entries,
        "ended": result.ended,
        "problem": result.problem,
        "bad_seq": result.bad_seq,
    }


def _list(store: RunStore, args: argparse.Namespace) -> int:
    manifests = store.list_runs()
    if args.json:
        write_json(sys.stdout, [m.to_json() for m in manifests])
    else:
        print(render_runs(manifests))
    return EXIT_OK


def _show(store: RunStore, args: argparse.Namespace) -> int:
    manifest = store.get_run(args.run_id)
    summary = summarize_recording(
        manifest, store.iter_entries(args.run_id), f"{args.db}:{args.run_id}"
    ).summary
    if args.json:
        write_json(sys.stdout, {"run": manifest.to_json(), "summary": summary})
    else:
        print("\n".join(_show_lines(manifest)))
        if summary is not None and summary["sessions"]:
            print()
            print(render_summary(summary))
    return EXIT_OK


def _verify(store: RunStore, args: argparse.Namespace) -> int:
    run_ids = [args.run_id] if args.run_id else [m.run_id for m in store.list_runs()]
    results = [store.verify(run_id) for run_id in run_ids]
    if args.json:
        write_json(sys.stdout, [verify_json(r) for r in results])
    elif not results:
        print("no runs")
    else:
        rows = [
            [r.run_id, "ok" if r.intact else "BROKEN", r.entries, "yes" if r.ended else "no",
             r.problem]
            for r in results
        ]  # fmt: skip
        print(render_table(("RUN-ID", "CHAIN", "ENTRIES", "ENDED", "PROBLEM"), rows))
    return EXIT_OK if all(r.intact for r in results) else EXIT_FAILED


def command(args: argparse.Namespace) -> int:
    try:
        from simtrio.recording.store import RunStore
    except ImportError:
        print("simtrio runs: error: run recording is not available in this build", file=sys.stderr)
        return EXIT_USAGE
    action = {"list": _list, "show": _show, "verify": _verify}[args.runs_command]
    try:
        with RunStore.open(args.db, create=False) as store:
            return action(store, args)
    except (SimtrioError, RunFileError) as exc:
        # A missing or unreadable store or run: unreadable input, as for ``compare``.
        print(f"simtrio runs {args.runs_command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
