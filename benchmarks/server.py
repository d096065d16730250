"""The benchmark frame server: one asyncio process, raw sockets, pre-encoded frames.

Every client in a benchmark talks to this same process, so the server's cost is identical for
all of them. It does the WebSocket upgrade itself and then runs a script chosen by the request
path (the control-URL rules append ``/backtest``, so parameters live in path segments):

* ``/blast/<k>/<n>/...``: ``n`` ``sessionEventV2`` slot notifications for ``k`` sub-sessions
  as one pre-encoded byte string, then a Close.
* ``/parallel/<k>/<n>/...``: a parallel create handshake (answering the client's
  ``createBacktestSession``), then the same blast, then ``completed`` for every sub-session.
* ``/prtt/<k>/<rounds>/...``: a parallel create, then per sub-session a slot notification
  carrying the server's ``time.monotonic_ns()`` and ``readyForContinue``, again after every
  ``continueSessionV1`` for it, ``completed`` after ``rounds`` continues.
* ``/plain/<rounds>/...``: a single session; every ``continue`` is answered with a slot
  notification and ``readyForContinue`` (``completed`` after ``rounds``).
* ``/data/<n>/...``: a data-plane endpoint; every subscribe is acked, then ``n`` account-diff
  notifications and the terminal go out zstd-compressed (one stream, a flush per message).

Run as ``python -m benchmarks.server``; it prints ``PORT <port>`` and serves on 127.0.0.1 until
its standard input closes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
import time
from typing import Final

import orjson

from simtrio.wire import codec, types as wire
from simtrio.wire.compression import ZstdStreamEncoder

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WRITE_SLICE: Final = 1 << 20
FIRST_SLOT: Final = 312_000_000
PROGRAM: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


def frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


def text(s: str) -> bytes:
    return frame(0x1, s.encode())


def sub_id(i: int) -> str:
    return f"backtest_{i:08x}"


def event_frame(k: int, j: int, base_seq: int = 0) -> bytes:
    """The ``j``-th blasted event: sub-session ``j % k``, its own consecutive seq ids."""
    event = wire.SessionEventV2(
        sub_id(j % k), base_seq + j // k + 1, wire.SlotNotification(FIRST_SLOT + j)
    )
    return text(codec.encode_response(event))


_blasts: dict[tuple[int, int, int], bytes] = {}


def blast(k: int, n: int, base_seq: int = 0) -> bytes:
    key = (k, n, base_seq)
    if key not in _blasts:
        _blasts[key] = b"".join(event_frame(k, j, base_seq) for j in range(n))
    return _blasts[key]


def account_diff(subscription: int, slot: int) -> str:
    account = {
        "data": {"data": "ZAAAAAAAAAA=", "encoding": "base64"},
        "executable": False,
        "lamports": 2039280 + slot % 1000,
        "owner": PROGRAM,
        "space": 8,
    }
    result = {
        "context": {"slot": slot},
        "account": "B6K31RBmUPHnm2xubybB4p9LfJDWykmEnT6bBr5FfsNf",
        "signature": "3Ftwwh8fvto7YsQy1dThja41ufXstAuRd9qnNYN3XQacXck1RAviqms83NxkgbnwsRGbCX2dEFh"
        f"1uY1rxizNr{slot % 100000:05d}",
        "pre": account,
        "post": account,
    }
    params = {"subscription": subscription, "result": result}
    message = {"jsonrpc": "2.0", "method": "accountDiffNotification", "params": params}
    return orjson.dumps(message).decode()


_data_blasts: dict[int, bytes] = {}


def data_blast(n: int) -> bytes:
    """Compressed notifications for subscription 7 and its terminal, as Binary frames."""
    if n not in _data_blasts:
        encoder = ZstdStreamEncoder()
        parts = [frame(0x2, encoder.encode(account_diff(7, FIRST_SLOT + j))) for j in range(n)]
        terminal = {
            "jsonrpc": "2.0",
            "method": "subscriptionComplete",
            "params": {"subscription": 7},
        }
        parts.append(frame(0x2, encoder.encode(orjson.dumps(terminal))))
        _data_blasts[n] = b"".join(parts)
    return _data_blasts[n]


class Peer:
    """One accepted client connection after the upgrade."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        for i in range(0, len(view), WRITE_SLICE):
            self.writer.write(view[i : i + WRITE_SLICE])
            await self.writer.drain()

    async def receive(self) -> tuple[int, bytes]:
        """The next client frame (masked; never fragmented by the clients here)."""
        while True:
            head = await self.reader.readexactly(2)
            n = head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            key = await self.reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = await self.reader.readexactly(n)
            mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
            payload = (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")
            opcode = head[0] & 0x0F
            if opcode == 0x9:
                await self.send(frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            return opcode, payload

    async def receive_json(self) -> dict[str, object] | None:
        opcode, payload = await self.receive()
        if opcode == 0x8:
            await self.send(frame(0x8, payload[:2]))
            return None
        return orjson.loads(payload)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Send a Close and wait for the client's (or EOF), bounded."""
        try:
            await self.send(frame(0x8, (1000).to_bytes(2, "big")))
            async with asyncio.timeout(10):
                while True:
                    opcode, _ = await self.receive()
                    if opcode == 0x8:
                        return
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return


async def parallel_create(peer: Peer, k: int) -> None:
    request = await peer.receive_json()
    assert request is not None, "no create request"
    assert request.get("method") == "createBacktestSession", request
    ids = [sub_id(i) for i in range(k)]
    out = [codec.encode_response(wire.SessionCreated(sid, f"/backtest/{sid}")) for sid in ids]
    created = wire.SessionsCreatedV2(
        "parallel_bench",
        ids,
        [None] * k,
        [FIRST_SLOT] * k,
        [FIRST_SLOT + 1_000_000] * k,
    )
    out.append(codec.encode_response(created))
    await peer.send(b"".join(text(s) for s in out))


async def run_blast(peer: Peer, k: int, n: int) -> None:
    await peer.send(blast(k, n))
    await peer.close()


async def run_parallel(peer: Peer, k: int, n: int) -> None:
    await parallel_create(peer, k)
    await peer.send(blast(k, n))
    tail = [
        codec.encode_response(
            wire.SessionEventV2(sub_id(i), (n - i + k - 1) // k + 1, wire.Completed(None, None))
        )
        for i in range(k)
    ]
    await peer.send(b"".join(text(s) for s in tail))
    while await peer.receive_json() is not None:
        pass


async def run_parallel_rtt(peer: Peer, k: int, rounds: int) -> None:
    await parallel_create(peer, k)
    seqs = dict.fromkeys(range(k), 0)
    counts = dict.fromkeys(range(k), 0)

    def step(i: int) -> bytes:
        sid = sub_id(i)
        seq = seqs[i]
        counts[i] += 1
        if counts[i] > rounds:
            seqs[i] = seq + 1
            return text(
                codec.encode_response(wire.SessionEventV2(sid, seq + 1, wire.Completed(None, None)))
            )
        seqs[i] = seq + 2
        slot = wire.SlotNotification(time.monotonic_ns())
        return text(codec.encode_response(wire.SessionEventV2(sid, seq + 1, slot))) + text(
            codec.encode_response(wire.SessionEventV2(sid, seq + 2, wire.ReadyForContinue()))
        )

    await peer.send(b"".join(step(i) for i in range(k)))
    index = {sub_id(i): i for i in range(k)}
    while True:
        request = await peer.receive_json()
        if request is None:
            return
        params = request.get("params")
        if request.get("method") == "continueSessionV1" and isinstance(params, dict):
            await peer.send(step(index[str(params.get("sessionId"))]))


async def run_plain(peer: Peer, rounds: int) -> None:
    request = await peer.receive_json()
    assert request is not None, "no create request"
    assert request.get("method") == "createBacktestSession", request
    sid = sub_id(0)
    ready = text(codec.encode_response(wire.ReadyForContinue()))
    created = text(codec.encode_response(wire.SessionCreated(sid, f"/backtest/{sid}")))
    await peer.send(created + ready)
    count = 0
    while True:
        request = await peer.receive_json()
        if request is None:
            return
        if request.get("method") != "continue":
            continue
        count += 1
        if count > rounds:
            await peer.send(text(codec.encode_response(wire.Completed(None, None))))
            continue
        slot = text(codec.encode_response(wire.SlotNotification(FIRST_SLOT + count)))
        await peer.send(slot + ready)


async def run_data(peer: Peer, n: int) -> None:
    request = await peer.receive_json()
    assert request is not None, "no subscribe"
    ack = {"jsonrpc": "2.0", "id": request.get("id"), "result": 7}
    await peer.send(text(orjson.dumps(ack).decode()) + data_blast(n))
    while await peer.receive_json() is not None:
        pass


async def answer_rpc(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int
) -> None:
    """A plain HTTP request (a subscription asking ``getSlot``): one JSON-RPC answer, then close."""
    body = orjson.loads(await reader.readexactly(length)) if length else {}
    reply = orjson.dumps({"jsonrpc": "2.0", "id": body.get("id"), "result": FIRST_SLOT})
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + f"content-length: {len(reply)}\r\n\r\n".encode()
        + reply
    )
    await writer.drain()
    writer.close()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        )
        key = headers.get("sec-websocket-key")
        if key is None:
            await answer_rpc(reader, writer, int(headers.get("content-length", "0")))
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        peer = Peer(reader, writer)
        parts = path.strip("/").split("/")
        mode, args = parts[0], [int(p) for p in parts[1:] if p.isdigit()]
        if mode == "blast":
            await run_blast(peer, args[0], args[1])
        elif mode == "parallel":
            await run_parallel(peer, args[0], args[1])
        elif mode == "prtt":
            await run_parallel_rtt(peer, args[0], args[1])
        elif mode == "plain":
            await run_plain(peer, args[0])
        elif mode == "data":
            await run_data(peer, args[0])
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or exits).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
