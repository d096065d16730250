"""``simtrio replay``: serve a recorded run as if it were live."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from simtrio.cli.common import EXIT_FAILED

if TYPE_CHECKING:
    import argparse

    from simtrio.cli.common import Subparsers

__all__ = ["add_parser", "command"]


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("replay", help="serve a recorded run until Ctrl-C")
    p.add_argument("db", metavar="DB", type=Path)
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    print("simtrio replay: run recording is not available in this build", file=sys.stderr)
    return EXIT_FAILED
