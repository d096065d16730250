"""Benchmark 3: K sub-sessions on one control connection (memory, event latency, round trips).

The server stamps every slot notification with its ``time.monotonic_ns()`` (one clock for
every process on the machine), so a driver's receive time minus the slot is the event latency
from the server's send to the driver. Every sub-session continues as soon as it is ready, all
at once, so the round trip includes queueing behind the other sub-sessions.

simtrio (``open_parallel_session``, one driver task per sub-session) is measured against
floors doing the same workload in the same run, against the same server: a loop a user would
hand-roll, driving wsproto directly on trio (the floor the target is stated against), and the
same loop on websockets' asyncio client. Both parse every frame with orjson, keep a
per-sub-session readiness flag and answer each ``readyForContinue`` with that sub-session's
``continueSessionV1`` at once. Memory per sub-session is measured for simtrio only.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
import tracemalloc
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from benchmarks import clients as c
from benchmarks.common import write_result

if TYPE_CHECKING:
    from collections.abc import Callable

SIMTRIO = "simtrio open_parallel_session"
FLOOR = "wsproto on trio + orjson"
WEBSOCKETS = "websockets asyncio + orjson"


def _pct(values: list[int], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1e3  # microseconds


def _summary(
    first: list[int], later: list[int], round_trips: list[int], elapsed: float
) -> dict[str, Any]:
    """Percentiles of all events, and of each sub-session's first event vs the later ones.

    A sub-session's first slot is stamped in the create burst, before the client has set the
    sub-session up, so it carries per-sub-session setup cost rather than latency under load.
    """
    latencies = first + later
    return {
        "events": len(latencies),
        "event_latency_us_p50": _pct(latencies, 0.5),
        "event_latency_us_p99": _pct(latencies, 0.99),
        "first_event_latency_us_p99": _pct(first, 0.99),
        "later_event_latency_us_p50": _pct(later, 0.5),
        "later_event_latency_us_p99": _pct(later, 0.99),
        "continue_rtt_us_p50": _pct(round_trips, 0.5),
        "continue_rtt_us_p99": _pct(round_trips, 0.99),
        "continues_per_s": len(round_trips) / elapsed if elapsed else math.nan,
    }


# --- simtrio --------------------------------------------------------------------------------


async def _memory(url: str, k: int, limit: float) -> float:
    """Traced bytes per sub-session once every sub-session is created and ready."""
    from benchmarks.server import FIRST_SLOT
    from simtrio import events
    from simtrio.managed.parallel import open_parallel_session
    from simtrio.params import CreateSession

    async def until_ready(sub: Any) -> None:
        while not isinstance(await sub.next_event(), events.ReadyForContinue):
            pass

    create = CreateSession(FIRST_SLOT, slot_count=1000, parallel=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with trio.fail_after(limit):
            async with open_parallel_session(
                url, "bench-key", create, config=c.bench_config()
            ) as session:
                async with trio.open_nursery() as nursery:
                    for sub in session.take_sub_sessions():
                        nursery.start_soon(until_ready, sub)
                used = tracemalloc.get_traced_memory()[0] - before
        return used / k
    finally:
        tracemalloc.stop()


async def _simtrio(url: str, k: int, limit: float) -> dict[str, Any]:
    from benchmarks.server import FIRST_SLOT
    from simtrio import events
    from simtrio.managed.parallel import open_parallel_session
    from simtrio.params import Continue, CreateSession

    first: list[int] = []
    later: list[int] = []
    round_trips: list[int] = []
    one = Continue(1)

    async def drive(sub: Any) -> None:
        sent: int | None = None
        latencies = first
        async for event in sub.events():
            now = time.monotonic_ns()
            if isinstance(event, events.Slot):
                latencies.append(now - event.slot)
                latencies = later
            elif isinstance(event, events.ReadyForContinue):
                if sent is not None:
                    round_trips.append(now - sent)
                sent = time.monotonic_ns()
                await sub.send_continue(one)
            elif isinstance(event, events.Completed):
                return

    create = CreateSession(FIRST_SLOT, slot_count=1000, parallel=True)
    start = time.perf_counter()
    with trio.fail_after(limit):
        async with (
            open_parallel_session(url, "bench-key", create, config=c.bench_config()) as session,
            trio.open_nursery() as nursery,
        ):
            for sub in session.take_sub_sessions():
                nursery.start_soon(drive, sub)
    return _summary(first, later, round_trips, time.perf_counter() - start)


# --- floors ---------------------------------------------------------------------------------


def _create_request() -> str:
    """The exact ``createBacktestSession`` text simtrio sends for this workload."""
    from benchmarks.server import FIRST_SLOT
    from simtrio.params import CreateSession, as_create_request
    from simtrio.wire.codec import encode

    return encode(as_create_request(CreateSession(FIRST_SLOT, slot_count=1000, parallel=True)))


def _continue(session_id: str) -> str:
    request = {"advanceCount": 1, "transactions": [], "modifyAccountStates": {}}
    message = {
        "method": "continueSessionV1",
        "params": {"sessionId": session_id, "request": request},
    }
    return orjson.dumps(message).decode()


class _Driver:
    """The hand-rolled protocol logic both floors share: parse, route, track readiness.

    ``on_message`` returns the continues to send now (one per sub-session that became ready),
    and marks each as sent; sub-sessions ready before ``sessionsCreatedV2`` wait for it.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.first: list[int] = []
        self.later: list[int] = []
        self.seen: set[str] = set()
        self.round_trips: list[int] = []
        self.sent_at: dict[str, int] = {}
        self.ready: dict[str, bool] = {}
        self.created = False
        self.completed = 0

    @property
    def done(self) -> bool:
        return self.created and self.completed == len(self.ready)

    def on_message(self, raw: str | bytes) -> list[str]:
        message = orjson.loads(raw)
        now = time.monotonic_ns()
        method = message["method"]
        if method == "sessionEventV2":
            params = message["params"]
            event = params["event"]
            kind = event["method"]
            sid = params["session_id"]
            if kind == "slotNotification":
                if sid in self.seen:
                    self.later.append(now - event["params"])
                else:
                    self.seen.add(sid)
                    self.first.append(now - event["params"])
            elif kind == "readyForContinue":
                sent = self.sent_at.get(sid)
                if sent is not None:
                    self.round_trips.append(now - sent)
                self.ready[sid] = True
                if self.created:
                    return self._send([sid])
            elif kind == "completed":
                self.ready[sid] = False
                self.completed += 1
        elif method == "sessionsCreatedV2":
            ids: list[str] = message["params"]["session_ids"]
            if len(ids) != self.k:
                raise RuntimeError(f"created {len(ids)} sub-sessions, expected {self.k}")
            self.created = True
            waiting = [sid for sid in ids if self.ready.get(sid)]
            self.ready = {sid: self.ready.get(sid, False) for sid in ids}
            return self._send(waiting)
        elif method in ("error", "sessionError"):
            raise RuntimeError(f"server error: {message!r:.200}")
        return []

    def _send(self, sids: list[str]) -> list[str]:
        out = []
        for sid in sids:
            self.ready[sid] = False
            self.sent_at[sid] = time.monotonic_ns()
            out.append(_continue(sid))
        return out


async def wsproto_floor(url: str, k: int, limit: float) -> dict[str, Any]:
    """wsproto on trio: one read, every frame of it handled, the continues sent in one write."""
    host, port, path = c._split(url)
    driver = _Driver(k)
    start = time.perf_counter()
    with trio.fail_after(limit):
        async with await trio.open_tcp_stream(host, port) as stream:
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host=f"{host}:{port}", target=path)))
            parts: list[Any] = []
            while not driver.done:
                data = await stream.receive_some(c.RECEIVE_SIZE)
                if not data:
                    raise RuntimeError("server closed the connection early")
                ws.receive_data(data)
                out: list[bytes] = []
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        out.append(ws.send(TextMessage(data=_create_request())))
                    elif isinstance(event, TextMessage | BytesMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            message = parts[0] if len(parts) == 1 else type(parts[0])().join(parts)
                            parts.clear()
                            for text in driver.on_message(message):
                                out.append(ws.send(TextMessage(data=text)))
                    elif isinstance(event, Ping):
                        out.append(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        raise RuntimeError(f"server closed: {event.code} {event.reason}")
                if out:
                    await stream.send_all(b"".join(out))
            elapsed = time.perf_counter() - start
            await stream.send_all(ws.send(CloseConnection(code=1000)))
    return _summary(driver.first, driver.later, driver.round_trips, elapsed)


async def _websockets_floor(url: str, k: int, limit: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    driver = _Driver(k)
    start = time.perf_counter()
    async with asyncio.timeout(limit):
        async with connect(url, max_size=None, compression=None) as ws:
            await ws.send(_create_request())
            async for message in ws:
                for text in driver.on_message(message):
                    await ws.send(text)
                if driver.done:
                    break
            elapsed = time.perf_counter() - start
    if not driver.done:
        raise RuntimeError("server closed the connection early")
    return _summary(driver.first, driver.later, driver.round_trips, elapsed)


def websockets_floor(url: str, k: int, limit: float) -> dict[str, Any]:
    """websockets' asyncio client, awaiting each send (its own event loop, outside trio)."""
    return asyncio.run(_websockets_floor(url, k, limit))


# --- running and reporting ------------------------------------------------------------------


def _gc_collections() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]


def _attempt(measure: Callable[[], dict[str, Any]], limit: float) -> dict[str, Any]:
    """One run; its result also counts the garbage collections (per generation) it set off."""
    gc.collect()  # every client starts from the same heap state
    before = _gc_collections()
    try:
        result = measure()
        result["gc_collections"] = [b - a for a, b in zip(before, _gc_collections(), strict=True)]
        return result
    except trio.TooSlowError:
        return {"note": f"did not complete within {limit:g} s (a driver stalled?)"}
    except TimeoutError:
        return {"note": f"did not complete within {limit:g} s"}
    except Exception as exc:  # one broken client must not sink the others
        return {"note": f"failed: {type(exc).__name__}: {exc}"[:200]}


def _median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose p99 event latency is the median of the runs (all its figures together)."""
    done = [r for r in results if "event_latency_us_p99" in r]
    if not done:
        return results[-1]
    done.sort(key=lambda r: float(r["event_latency_us_p99"]))
    chosen = dict(done[len(done) // 2])
    chosen["runs"] = len(done)
    chosen["event_latency_us_p99_of_each_run"] = [r["event_latency_us_p99"] for r in done]
    return chosen


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return round(a / b, 2)


COLUMNS = (
    ("ev p50", "event_latency_us_p50"),
    ("ev p99", "event_latency_us_p99"),
    ("1st p99", "first_event_latency_us_p99"),
    ("later p99", "later_event_latency_us_p99"),
    ("rtt p50", "continue_rtt_us_p50"),
    ("rtt p99", "continue_rtt_us_p99"),
    ("cont/s", "continues_per_s"),
)
RATIOS = (
    ("ev p99", "event_latency_us_p99"),
    ("later p99", "later_event_latency_us_p99"),
    ("rtt p99", "continue_rtt_us_p99"),
)
GC_TITLE = "gc 0/1/2"
LEGEND = """\
ev = event latency (driver receive - server's send stamp), all slot events; 1st = each
sub-session's first slot (stamped in the create burst, so it includes setting the sub-session
up); later = the rest; rtt = continue -> that sub-session's next readyForContinue. Microseconds,
lower is better; cont/s higher is better. Closed loop: each client sets its own load, so a
client that sends continues slowly sees shorter server -> client queues (compare ev with rtt
and cont/s). gc 0/1/2 = garbage collections of each generation during the run (a full one,
generation 2, stops everything for tens of milliseconds with a thousand sub-sessions). "x floor"
columns: this client's p99 / the wsproto floor's p99 at the same K."""


def _line(k: int, name: str, memory: str, result: dict[str, Any], floor: dict[str, Any]) -> str:
    cells = "".join(f"{result.get(key, math.nan):>{len(title) + 2}.0f}" for title, key in COLUMNS)
    ratios = ""
    for title, key in RATIOS:
        ratio = _ratio(result.get(key), floor.get(key))
        ratios += f"{'' if ratio is None else f'{ratio:.2f}':>{len(title) + 2}}"
    collections = result.get("gc_collections")
    gc_cell = "/".join(map(str, collections)) if collections else "-"
    note = f"  ({result['note']})" if "note" in result else ""
    return f"{k:>5}  {name:<30}{memory:>8}{cells}{gc_cell:>{len(GC_TITLE) + 2}}{ratios}{note}"


def run(port: int, *, quick: bool) -> dict[str, Any]:
    ks = [1, 10, 100] if quick else [1, 10, 100, 1000]
    budget = 600 if quick else 20_000
    limit = 8.0 if quick else 30.0
    reps = 1 if quick else 3
    records: list[dict[str, Any]] = []
    print(
        f"\n## scale: K sub-sessions on one control connection, ~{budget:,} continues per K,"
        f" median of {reps} (by p99 event latency)"
    )
    print(LEGEND)
    head = (
        f"{'K':>5}  {'client':<30}{'KiB/sub':>8}"
        + "".join(f"{title:>{len(title) + 2}}" for title, _ in COLUMNS)
        + f"{GC_TITLE:>{len(GC_TITLE) + 2}}"
    )
    x_floor = "".join(f"{title:>{len(title) + 2}}" for title, _ in RATIOS)
    print(f"{'':{len(head)}}{'-- x floor --':^{len(x_floor)}}")
    print(head + x_floor)
    print("-" * len(head + x_floor))
    for k in ks:
        rounds = max(3, budget // k)
        url = f"ws://127.0.0.1:{port}/prtt/{k}/{rounds}/backtest"
        record: dict[str, Any] = {"sub_sessions": k, "rounds": rounds}
        try:
            record["simtrio_bytes_per_sub_session"] = round(trio.run(_memory, url, k, limit))
        except Exception as exc:
            record["simtrio_memory_note"] = f"failed: {type(exc).__name__}: {exc}"[:200]
        measures = {
            FLOOR: partial(trio.run, wsproto_floor, url, k, limit),
            WEBSOCKETS: partial(websockets_floor, url, k, limit),
            SIMTRIO: partial(trio.run, _simtrio, url, k, limit),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in measures}
        for _ in range(reps):  # interleaved, so that a slow spell of the machine hits all
            for name, measure in measures.items():
                runs[name].append(_attempt(measure, limit))
        clients = {name: _median_run(results) for name, results in runs.items()}
        record["clients"] = clients
        floor = clients[FLOOR]
        for name in (WEBSOCKETS, SIMTRIO):
            clients[name]["x_floor"] = {
                key: _ratio(clients[name].get(key), floor.get(key)) for _, key in RATIOS
            }
        records.append(record)
        memory = record.get("simtrio_bytes_per_sub_session")
        for name, result in clients.items():
            shown = f"{memory / 1024:.1f}" if name == SIMTRIO and memory is not None else ""
            print(_line(k, name, shown, result, floor))
        if "simtrio_memory_note" in record:
            print(f"{'':>7}simtrio memory: {record['simtrio_memory_note']}")
    params = {
        "ks": ks,
        "continue_budget": budget,
        "limit_s": limit,
        "floor": FLOOR,
        "reps": reps,
        "note": f"{reps} interleaved runs per client per K; each row is the run with the median"
        " p99 event latency (latency percentiles on a shared machine are noisy). Closed loop: each client's latencies are at its own continue "
        "rate (continues_per_s). Memory: tracemalloc (Python allocations only), simtrio "
        "only, once every sub-session is ready.",
    }
    path = write_result("scale", params, {"scale": records}, quick)
    print(f"-> {path.relative_to(path.parent.parent.parent)}")
    return {"scale": records}
