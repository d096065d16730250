"""Receive loops, one per client stack, each timed from its first message to its last.

Every loop returns a :class:`Timing`; the benchmark modules combine them into tables. Loops
that need a library that is missing raise :class:`Unavailable`, which the table shows as a
row without a number.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio
import zstandard
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from simtrio.core.demux import ParallelDemux
from simtrio.errors import ConnectionClosed
from simtrio.transport import connection as transport
from simtrio.transport.engine import ClientEngine
from simtrio.wire import codec, types as wire
from simtrio.wire.compression import ZstdStreamDecoder
from simtrio.wire.rpc import decode_rpc

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

MAX_SIZE = 64 * 1024 * 1024
RECEIVE_SIZE = 256 * 1024
SUBSCRIBE = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "accountDiffSubscribe",
        "params": ["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", {"compression": "zstd"}],
    }
).decode()


class Unavailable(Exception):
    """This client cannot run here (a missing module, a layer not built yet)."""


@attrs.define
class Timing:
    """``count`` messages from the arrival of the first read (``start``) to ``end``.

    Loops call :meth:`arrived` as soon as a read returns and :meth:`tick` once its messages
    are processed, so a batch-at-a-time client and a message-at-a-time one are timed alike.
    """

    count: int = 0
    start: float = 0.0
    end: float = 0.0

    def arrived(self) -> None:
        if not self.start:
            self.start = time.perf_counter()

    def tick(self, n: int = 1) -> None:
        self.arrived()
        self.count += n
        self.end = time.perf_counter()

    @property
    def rate(self) -> float:
        span = self.end - self.start
        return self.count / span if span > 0 and self.count else math.nan


# --- simtrio transport ----------------------------------------------------------------------


@asynccontextmanager
async def simtrio_connection(
    url: str, *, wsproto_reader: bool
) -> AsyncGenerator[transport.WebSocketConnection]:
    """simtrio's own connection, with its frame decoder or with wsproto's reader."""
    original = transport.ClientEngine
    if wsproto_reader:
        transport.ClientEngine = functools.partial(ClientEngine, wsproto_reader=True)  # type: ignore[misc,assignment]
    try:
        conn = await transport.connect(url, connect_timeout=10, max_message_size=MAX_SIZE)
    finally:
        transport.ClientEngine = original  # type: ignore[misc]
    try:
        yield conn
    finally:
        await conn.aclose()


async def simtrio_raw(url: str, n: int, *, wsproto_reader: bool = False) -> Timing:
    """receive_batch + orjson.loads of every message."""
    timing = Timing()
    loads = orjson.loads
    async with simtrio_connection(url, wsproto_reader=wsproto_reader) as conn:
        while timing.count < n:
            batch = await conn.receive_batch()
            timing.arrived()
            for message in batch:
                loads(message)
            timing.tick(len(batch))
    return timing


def running_demux(k: int) -> ParallelDemux:
    """A demux past a create handshake for the server's ``k`` sub-sessions."""
    from benchmarks.server import FIRST_SLOT, sub_id

    create = wire.CreateBacktestSessionRequest(
        start_slot=FIRST_SLOT, end_slot=FIRST_SLOT + 10, parallel=True
    )
    demux = ParallelDemux(create)
    demux.connection_opened()
    ids = [sub_id(i) for i in range(k)]
    handshake: list[wire.BacktestResponse] = [
        wire.SessionCreated(sid, f"/backtest/{sid}") for sid in ids
    ]
    handshake.append(
        wire.SessionsCreatedV2("p", ids, [None] * k, [FIRST_SLOT] * k, [FIRST_SLOT + 9] * k)
    )
    demux.feed_batch(handshake)
    return demux


async def simtrio_pipeline(url: str, n: int, k: int, *, wsproto_reader: bool = False) -> Timing:
    """receive_batch -> codec.decode_frame -> ParallelDemux.feed_batch -> K channels."""
    timing = Timing()
    demux = running_demux(k)
    decode = codec.decode_frame
    senders: dict[str, trio.MemorySendChannel[Any]] = {}
    async with trio.open_nursery() as nursery:
        for sid in [s.session_id for s in demux.sub_sessions]:
            send, receive = trio.open_memory_channel[Any](math.inf)
            senders[sid] = send
            nursery.start_soon(_drain, receive, timing)
        async with simtrio_connection(url, wsproto_reader=wsproto_reader) as conn:
            received = 0
            while received < n:
                batch = await conn.receive_batch()
                timing.arrived()
                received += len(batch)
                for item in demux.feed_batch([decode(m)[1] for m in batch]):
                    if type(item) is tuple:
                        senders[item[0]].send_nowait(item[1])
        for send in senders.values():
            send.close()
    return timing


async def _drain(receive: trio.MemoryReceiveChannel[Any], timing: Timing) -> None:
    async with receive:
        async for _ in receive:
            timing.tick()


async def simtrio_parallel_e2e(url: str, n: int, k: int) -> Timing:
    """open_parallel_session: every sub-session's driver reads until Completed."""
    try:
        from simtrio import events
        from simtrio.managed.parallel import open_parallel_session
        from simtrio.params import CreateSession
    except ImportError as exc:  # pragma: no cover - depends on the tree
        raise Unavailable(f"managed parallel session not importable: {exc}") from None
    from benchmarks.server import FIRST_SLOT

    timing = Timing()

    async def drive(sub: Any) -> None:
        async for event in sub.events():
            if isinstance(event, events.Completed):
                return
            timing.tick()

    create = CreateSession(FIRST_SLOT, slot_count=1000, parallel=True)
    opened = open_parallel_session(url, "bench-key", create, config=bench_config())
    async with opened as session, trio.open_nursery() as nursery:
        for sub in session.take_sub_sessions():
            nursery.start_soon(drive, sub)
    if timing.count != n:
        raise Unavailable(f"open_parallel_session delivered {timing.count} of {n} events")
    return timing


async def simtrio_data(url: str, n: int, *, wsproto_reader: bool = False) -> Timing:
    """receive_batch -> ZstdStreamDecoder.decode -> wire.rpc.decode_rpc."""
    timing = Timing()
    decoder = ZstdStreamDecoder()
    decompress = decoder.decode
    async with simtrio_connection(url, wsproto_reader=wsproto_reader) as conn:
        await conn.send_text(SUBSCRIBE)
        while timing.count < n:
            batch = await conn.receive_batch()
            timing.arrived()
            got = 0
            for message in batch:
                if type(message) is bytes:
                    decode_rpc(decompress(message))
                    got += 1
            if got:
                timing.tick(got)
    return timing


async def simtrio_data_e2e(url: str, n: int) -> Timing:
    """open_account_diff_subscription: iterate the notifications to the terminal."""
    try:
        from simtrio.managed.standalone import open_account_diff_subscription
    except ImportError as exc:  # pragma: no cover
        raise Unavailable(f"subscriptions not importable: {exc}") from None
    timing = Timing()
    rpc = url.replace("ws://", "http://", 1)
    program = orjson.loads(SUBSCRIBE)["params"][0]
    async with open_account_diff_subscription(rpc, [program], config=bench_config()) as sub:
        notifications: Any = sub.notifications  # type: ignore[attr-defined]
        async for _ in notifications:
            timing.tick()
    if timing.count != n:
        raise Unavailable(f"open_account_diff_subscription delivered {timing.count} of {n}")
    return timing


def bench_config() -> Any:
    """Managed defaults, but give up after a few seconds instead of reconnecting for ever."""
    from simtrio.managed.config import ManagedConfig

    return ManagedConfig(reconnect_max_total=3.0)


# --- bare wsproto on trio -------------------------------------------------------------------


def _split(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port), "/" + path


async def wsproto_loop(
    url: str,
    on_message: Callable[[str | bytes], int],
    n: int,
    *,
    first: str | None = None,
) -> Timing:
    """A trio loop driving wsproto directly: ``on_message`` returns how many to count."""
    host, port, path = _split(url)
    stream = await trio.open_tcp_stream(host, port)
    timing = Timing()
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target=path)))
        parts: list[Any] = []
        opened = False
        while timing.count < n:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                break
            if opened:
                timing.arrived()
            ws.receive_data(data)
            got = 0
            out = b""
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    opened = True
                    if first is not None:
                        out += ws.send(TextMessage(data=first))
                elif isinstance(event, TextMessage | BytesMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        message = parts[0] if len(parts) == 1 else type(parts[0])().join(parts)
                        parts.clear()
                        got += on_message(message)
                elif isinstance(event, Ping | CloseConnection):
                    out += ws.send(event.response())
            if out:
                await stream.send_all(out)
            if got:
                timing.tick(got)
        assert opened
        if ws.state.name == "OPEN":
            await stream.send_all(ws.send(CloseConnection(code=1000)))
    return timing


def json_counter() -> Callable[[str | bytes], int]:
    loads = orjson.loads

    def on_message(message: str | bytes) -> int:
        loads(message)
        return 1

    return on_message


def zstd_counter() -> Callable[[str | bytes], int]:
    decompress = zstandard.ZstdDecompressor().decompressobj().decompress
    loads = orjson.loads

    def on_message(message: str | bytes) -> int:
        if isinstance(message, str):
            return 0
        loads(decompress(message))
        return 1

    return on_message


# --- trio-websocket -------------------------------------------------------------------------


async def trio_websocket_loop(
    url: str, on_message: Callable[[str | bytes], int], n: int, *, first: str | None = None
) -> Timing:
    from trio_websocket import ConnectionClosed as TwClosed, open_websocket_url

    timing = Timing()
    async with open_websocket_url(url, max_message_size=MAX_SIZE) as ws:
        if first is not None:
            await ws.send_message(first)
        try:
            while timing.count < n:
                message = await ws.get_message()
                timing.arrived()
                got = on_message(message)
                if got:
                    timing.tick(got)
        except TwClosed:
            pass
    return timing


# --- websockets (asyncio and trio) ----------------------------------------------------------


async def _websockets_loop(
    connect: Any, url: str, on_message: Callable[[str | bytes], int], n: int, first: str | None
) -> Timing:
    """The same receive loop on either of websockets' clients (``connect`` picks which)."""
    timing = Timing()
    async with connect(url, max_size=None, compression=None) as ws:
        if first is not None:
            await ws.send(first)
        async for message in ws:
            timing.arrived()
            got = on_message(message)
            if got:
                timing.tick(got)
                if timing.count >= n:
                    break
    return timing


def websockets_asyncio(
    url: str, on_message: Callable[[str | bytes], int], n: int, *, first: str | None = None
) -> Timing:
    """Runs its own asyncio loop (called outside trio)."""
    from websockets.asyncio.client import connect

    return asyncio.run(_websockets_loop(connect, url, on_message, n, first))


async def websockets_trio(
    url: str, on_message: Callable[[str | bytes], int], n: int, *, first: str | None = None
) -> Timing:
    try:
        from websockets.trio.client import connect
    except ImportError as exc:
        raise Unavailable(f"websockets has no trio client: {exc}") from None
    return await _websockets_loop(connect, url, on_message, n, first)


# --- running one client ---------------------------------------------------------------------


def run_client(client: Callable[[], Any], *, trio_based: bool = True, limit: float = 120) -> Timing:
    """Run one client loop to completion in a fresh event loop, bounded by ``limit`` seconds."""
    if not trio_based:
        timing: Timing = client()
        return timing

    async def bounded() -> Timing:
        with trio.fail_after(limit):
            result: Timing = await client()
            return result

    try:
        return trio.run(bounded)
    except ConnectionClosed as exc:
        raise Unavailable(f"connection closed early: {exc}") from None
