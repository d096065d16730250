"""``simtrio runs export`` / ``simtrio runs import``: move finished runs between stores.

An import recomputes the run's hash chain; a run that is not intact is quarantined next to the
store (``DB.quarantine/``) and never merged, and the command exits 1.
"""

from __future__ import annotations

__all__: list[str] = []

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtrio.cli.common import EXIT_FAILED, EXIT_OK, add_json_flag
from simtrio.cli.console import render_table
from simtrio.cli.output import write_json
from simtrio.errors import SimtrioError

if TYPE_CHECKING:
    import argparse

    from simtrio.cli.common import Subparsers


def add_actions(actions: Subparsers) -> None:
    """Add ``export`` and ``import`` to the ``simtrio runs`` actions."""
    export = actions.add_parser("export", help="write one finished run to a file")
    export.add_argument("db", metavar="DB", type=Path)
    export.add_argument("run_id", metavar="RUN_ID")
    export.add_argument("-o", "--output", metavar="FILE", type=Path, help="default: RUN_ID.simrun")
    imp = actions.add_parser(
        "import", help="add exported runs to a store, hash chain verified (exit 1 if any is not)"
    )
    imp.add_argument("db", metavar="DB", type=Path)
    imp.add_argument("files", metavar="FILE", type=Path, nargs="+")
    add_json_flag(imp, "a JSON array")
    export.set_defaults(handler=_export, usage_parser=export)
    imp.set_defaults(handler=_import, usage_parser=imp)


def _export(args: argparse.Namespace) -> int:
    from simtrio.recording.store import RunStore
    from simtrio.recording.transfer import export_run

    target: Path = args.output or Path(f"{args.run_id}.simrun")
    try:
        with RunStore.open(args.db, create=False) as store:
            data = export_run(store, args.run_id)
        target.write_bytes(data)
    except SimtrioError as exc:
        print(f"simtrio runs export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"simtrio runs export: cannot write {target}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    print(target)
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from simtrio.recording.store import RunStore
    from simtrio.recording.transfer import import_run

    rows: list[dict[str, Any]] = []
    try:
        with RunStore.open(args.db) as store:
            for file in args.files:
                try:
                    data = file.read_bytes()
                except OSError as exc:
                    print(
                        f"simtrio runs import: cannot read {file}: {exc.strerror}", file=sys.stderr
                    )
                    return EXIT_FAILED
                result = import_run(store, data)
                status = (
                    "imported"
                    if result.imported
                    else "already present"
                    if result.already_present
                    else "QUARANTINED"
                )
                rows.append(
                    {
                        "file": str(file),
                        "run_id": result.run_id,
                        "status": status,
                        "problem": result.problem,
                        "quarantined": None
                        if result.quarantined is None
                        else str(result.quarantined),
                    }
                )
    except SimtrioError as exc:
        print(f"simtrio runs import: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        write_json(sys.stdout, rows)
    else:
        table = [[r["file"], r["run_id"], r["status"], r["problem"]] for r in rows]
        print(render_table(("FILE", "RUN-ID", "STATUS", "PROBLEM"), table))
    return EXIT_OK if all(r["status"] != "QUARANTINED" for r in rows) else EXIT_FAILED
