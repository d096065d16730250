"""Benchmark 1: control-plane demultiplexing of ``sessionEventV2`` frames for K sub-sessions."""

from __future__ import annotations

from typing import Any

from benchmarks import clients as c
from benchmarks.common import Row, measure, table, write_result

BASELINES = ["websockets asyncio + orjson", "wsproto on trio + orjson"]


def run(port: int, *, quick: bool) -> dict[str, Any]:
    n = 3000 if quick else 200_000
    k = 16
    reps = 1 if quick else 3
    blast = f"ws://127.0.0.1:{port}/blast/{k}/{n}/backtest"
    parallel = f"ws://127.0.0.1:{port}/parallel/{k}/{n}/backtest"
    json_ = c.json_counter
    raw = [
        Row("trio-websocket + orjson", lambda: c.trio_websocket_loop(blast, json_(), n)),
        Row("wsproto on trio + orjson", lambda: c.wsproto_loop(blast, json_(), n)),
        Row("websockets trio + orjson", lambda: c.websockets_trio(blast, json_(), n)),
        Row(
            "websockets asyncio + orjson",
            lambda: c.websockets_asyncio(blast, json_(), n),
            trio_based=False,
        ),
        Row(
            "simtrio receive_batch + orjson [wsproto reader]",
            lambda: c.simtrio_raw(blast, n, wsproto_reader=True),
        ),
        Row("simtrio receive_batch + orjson", lambda: c.simtrio_raw(blast, n)),
    ]
    routed = [
        Row(
            "simtrio decode+demux+K channels [wsproto reader]",
            lambda: c.simtrio_pipeline(blast, n, k, wsproto_reader=True),
        ),
        Row("simtrio decode+demux+K channels", lambda: c.simtrio_pipeline(blast, n, k)),
        Row(
            "simtrio open_parallel_session (end to end)",
            lambda: c.simtrio_parallel_e2e(parallel, n, k),
        ),
    ]
    rows = raw + routed
    measure(rows, reps, limit=15 if quick else 60)
    title = f"control plane: {n:,} sessionEventV2 frames (~150 B) for K={k} sub-sessions, best of {reps}"
    records = table(title, rows, BASELINES)
    params = {"frames": n, "sub_sessions": k, "reps": reps}
    path = write_result("control_demux", params, {"throughput": records}, quick)
    print(f"-> {path.relative_to(path.parent.parent.parent)}")
    return {"throughput": records}
