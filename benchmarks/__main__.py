"""``python -m benchmarks [--quick] [--only NAME ...]``: every benchmark against one server."""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks import control, data, execution, plain, rpc, scale, sweep
from benchmarks.common import frame_server

BENCHMARKS = {
    "control": control.run,
    "data": data.run,
    "scale": scale.run,
    "plain": plain.run,
    "execution": execution.run,
    "rpc": rpc.run,
    "sweep": sweep.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (no speed claims)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    started = time.perf_counter()
    print(f"simtrio benchmarks ({'quick' if args.quick else 'full'}): {', '.join(names)}")
    print("loopback 127.0.0.1, one shared asyncio frame-server process; higher is better")
    with frame_server() as port:
        for name in names:
            BENCHMARKS[name](port, quick=args.quick)
    print(f"\ndone in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
