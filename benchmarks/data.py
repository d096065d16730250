"""Benchmark 2: zstd-compressed account-diff notifications (one stream, a flush per message)."""

from __future__ import annotations

from typing import Any

from benchmarks import clients as c
from benchmarks.common import Row, measure, table, write_result

BASELINES = ["websockets asyncio + zstd + orjson", "wsproto on trio + zstd + orjson"]


def run(port: int, *, quick: bool) -> dict[str, Any]:
    n = 3000 if quick else 100_000
    reps = 1 if quick else 3
    url = f"ws://127.0.0.1:{port}/data/{n}/backtest"
    sub = c.SUBSCRIBE
    z = c.zstd_counter
    rows = [
        Row(
            "trio-websocket + zstd + orjson", lambda: c.trio_websocket_loop(url, z(), n, first=sub)
        ),
        Row("wsproto on trio + zstd + orjson", lambda: c.wsproto_loop(url, z(), n, first=sub)),
        Row("websockets trio + zstd + orjson", lambda: c.websockets_trio(url, z(), n, first=sub)),
        Row(
            "websockets asyncio + zstd + orjson",
            lambda: c.websockets_asyncio(url, z(), n, first=sub),
            trio_based=False,
        ),
        Row(
            "simtrio receive_batch + ZstdStreamDecoder + decode_rpc [wsproto reader]",
            lambda: c.simtrio_data(url, n, wsproto_reader=True),
        ),
        Row(
            "simtrio receive_batch + ZstdStreamDecoder + decode_rpc",
            lambda: c.simtrio_data(url, n),
        ),
        Row(
            "simtrio open_account_diff_subscription (end to end)",
            lambda: c.simtrio_data_e2e(url, n),
        ),
    ]
    measure(rows, reps, limit=15 if quick else 60)
    title = f"data plane: {n:,} zstd account-diff notifications (~640 B decoded), best of {reps}"
    records = table(title, rows, BASELINES)
    path = write_result(
        "data_plane", {"notifications": n, "reps": reps}, {"throughput": records}, quick
    )
    print(f"-> {path.relative_to(path.parent.parent.parent)}")
    return {"throughput": records}
