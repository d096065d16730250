"""The trio shell, opening and running: the happy path and every way connecting fails.

Raw peers run in memory through the stream-opener seam unless a test is about real sockets
(TLS, resets, refused ports); trio-websocket peers listen on 127.0.0.1.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest
import trio
import trio.lowlevel
import trio.testing

from simtrio.errors import ConnectError, ConnectionClosed
from simtrio.transport.connection import connect, open_connection
from simtrio.transport.endpoint import parse_url
from simtrio.transport.streams import open_stream, stream_opener
from tests.client.fakes import refused_port
from tests.resolver import install_unknown_hosts
from tests.transport.peers import (
    KEY,
    connect_error,
    echo_handler,
    sending,
    tcp_server,
    ws_server,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

    from trio_websocket import WebSocketRequest

    pass

# --- happy path -----------------------------------------------------------------------------


async def test_round_trip_text_and_binary() -> None:
    async with ws_server(echo_handler) as url, open_connection(url, connect_timeout=5) as conn:
        await conn.send_text("héllo")
        assert await conn.receive() == "héllo"
        await conn.send_binary(b"\x00\x01\xff")
        assert await conn.receive() == b"\x00\x01\xff"
        big = "x" * 3_000_000
        await conn.send_text(big)
        assert await conn.receive() == big
        assert not conn.closed
        assert "open" in repr(conn)


async def test_send_texts_sends_every_message_in_order() -> None:
    async with ws_server(echo_handler) as url, open_connection(url, connect_timeout=5) as conn:
        texts = [f"continue {i}" for i in range(50)] + ["y" * 70_000]
        await conn.send_texts(texts)
        got: list[str | bytes] = []
        while len(got) < len(texts):
            got += await conn.receive_batch()
        assert got == texts
        await conn.send_texts([])  # nothing to send is no error
        await conn.aclose()
        with pytest.raises(ConnectionClosed):
            await conn.send_texts(["late"])


async def test_receive_batch_returns_everything_in_order() -> None:
    async with ws_server(sending(300)) as url, open_connection(url, connect_timeout=5) as conn:
        got: list[str | bytes] = []
        while len(got) < 300:
            batch = await conn.receive_batch()
            assert batch
            got += batch
        assert got == [f"m{i}" for i in range(300)]


async def test_receive_and_receive_batch_share_the_buffer() -> None:
    async with ws_server(sending(3)) as url, open_connection(url, connect_timeout=5) as conn:
        got = [await conn.receive()]
        while len(got) < 3:
            got += await conn.receive_batch()
        assert got == ["m0", "m1", "m2"]


async def test_headers_path_and_query_reach_the_server() -> None:
    seen: list[tuple[str, list[tuple[bytes, bytes]]]] = []

    async def handler(request: WebSocketRequest) -> None:
        seen.append((request.path, list(request.headers)))
        await echo_handler(request)

    async with ws_server(handler) as url:
        async with open_connection(
            url + "/backtest?a=1", headers=[("X-API-Key", KEY)], connect_timeout=5
        ) as conn:
            await conn.send_text("x")
            assert await conn.receive() == "x"
        async with open_connection(url, connect_timeout=5) as conn:
            await conn.send_text("y")
            assert await conn.receive() == "y"
    (path, headers), (bare_path, _) = seen
    assert path == "/backtest?a=1"
    assert bare_path == "/"
    assert (b"x-api-key", KEY.encode()) in [(k.lower(), v) for k, v in headers]


async def test_tls_round_trip(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async with (
        ws_server(echo_handler, server_tls) as url,
        open_connection(url, connect_timeout=5, ssl_context=client_tls) as conn,
    ):
        await conn.send_text("secure")
        assert await conn.receive() == "secure"


# --- connect failures -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_rejection_is_fatal_and_never_shows_the_key(status: int) -> None:
    async def handler(request: WebSocketRequest) -> None:
        await request.reject(status, body=f"bad key {KEY}".encode())

    async with ws_server(handler) as url:
        err = await connect_error(
            connect(url, headers=[("X-API-Key", KEY)], connect_timeout=5), fatal=True
        )
    assert err.status == status
    assert str(status) in str(err)
    assert "bad key" in str(err)
    assert KEY not in str(err)


async def test_other_rejections_are_transient_with_status_and_body() -> None:
    async def handler(request: WebSocketRequest) -> None:
        await request.reject(404, body=b"no such route")

    async with ws_server(handler) as url:
        err = await connect_error(connect(url, connect_timeout=5), fatal=False)
    assert err.status == 404
    assert "404" in str(err)
    assert "no such route" in str(err)


async def test_connection_refused_is_transient() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = await connect_error(connect(f"ws://127.0.0.1:{port}/", connect_timeout=5), fatal=False)
    assert err.status is None


async def test_connect_timeout_when_the_server_never_answers(autojump_clock: object) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with tcp_server(silent) as port:
        start = trio.current_time()
        await connect_error(
            connect(f"ws://127.0.0.1:{port}", connect_timeout=7), fatal=False, match="timed out"
        )
        assert trio.current_time() - start == pytest.approx(7)


async def hangs_up_on_the_upgrade(stream: trio.SocketStream) -> None:
    await stream.receive_some()
    await stream.aclose()


async def answers_the_upgrade_with_a_bad_accept(stream: trio.SocketStream) -> None:
    await stream.receive_some()
    await stream.send_all(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
        b"connection: upgrade\r\nsec-websocket-accept: nope\r\n\r\n"
    )
    await trio.sleep_forever()


@pytest.mark.parametrize(
    ("peer", "match"),
    [
        (hangs_up_on_the_upgrade, "closed during the upgrade"),
        (answers_the_upgrade_with_a_bad_accept, "invalid upgrade response"),
    ],
)
async def test_a_failed_upgrade_is_transient(
    peer: Callable[[trio.SocketStream], Awaitable[None]], match: str
) -> None:
    async with tcp_server(peer) as port:
        await connect_error(
            connect(f"ws://127.0.0.1:{port}", connect_timeout=5), fatal=False, match=match
        )


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "127.0.0.1:80", "ws://", "ws://h:x/"])
async def test_unusable_url_is_fatal(url: str) -> None:
    await connect_error(connect(url, connect_timeout=5), fatal=True)


async def test_unusable_header_value_is_fatal_and_not_shown() -> None:
    err = await connect_error(
        connect("ws://127.0.0.1:1/", headers=[("X-API-Key", KEY + "\n")], connect_timeout=5),
        fatal=True,
    )
    assert KEY not in str(err)
    assert err.__cause__ is None


async def test_certificate_failure_is_fatal(server_tls: ssl.SSLContext) -> None:
    async def handler(request: WebSocketRequest) -> None:  # pragma: no cover - never reached
        await request.accept()

    async with ws_server(handler, server_tls) as url:
        # The default context does not trust it.
        await connect_error(connect(url, connect_timeout=5), fatal=True, match="certificate")


async def test_tls_against_a_plain_server_is_fatal_with_its_cause() -> None:
    """A plain-text server on a wss:// port answers the same way on every retry."""

    async def plain(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    async with tcp_server(plain, tcp=True) as port:
        err = await connect_error(connect(f"wss://127.0.0.1:{port}", connect_timeout=5), fatal=True)
    message = str(err)
    assert message.startswith(f"TLS handshake with wss://127.0.0.1:{port}/ failed: ")
    assert "wrong version number" in message
    assert "ws://" in message


async def test_tls_handshake_cut_short_is_transient() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some()

    async with tcp_server(hang_up, tcp=True) as port:
        await connect_error(connect(f"wss://127.0.0.1:{port}", connect_timeout=5), fatal=False)


async def test_unknown_host_is_fatal_with_its_cause() -> None:
    install_unknown_hosts()
    err = await connect_error(
        connect("ws://no-such-host.invalid:80", connect_timeout=5), fatal=True
    )
    assert str(err).startswith("cannot resolve host 'no-such-host.invalid'")


async def test_a_resolver_without_an_answer_yet_is_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_answer(host: str, port: int) -> trio.SocketStream:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(trio, "open_tcp_stream", no_answer)
    err = await connect_error(connect("ws://example.test:80", connect_timeout=5), fatal=False)
    assert "Temporary failure in name resolution" in str(err)


async def test_refused_is_transient_and_says_so() -> None:
    err = await connect_error(
        connect(f"ws://127.0.0.1:{refused_port()}", connect_timeout=5), fatal=False
    )
    assert "connection refused" in str(err)


@pytest.mark.parametrize("url", ["wss://not a url/backtest", "ws://a{b}:80/", "ws://a<b/"])
async def test_malformed_host_fails_before_any_io(url: str) -> None:
    err = await connect_error(connect(url, connect_timeout=5), fatal=True)
    assert "not a valid host name" in str(err)


async def test_a_stream_opener_is_used_inside_its_block_only() -> None:
    seen: list[tuple[str, int]] = []

    async def opener(host: str, port: int) -> trio.abc.Stream:
        seen.append((host, port))
        if port == 2:
            raise ConnectionRefusedError(111, "refused by the opener")
        client_end, _ = trio.testing.memory_stream_pair()
        return client_end

    with stream_opener(opener):
        stream = await open_stream(parse_url("ws://h.test:1/", plain="ws", secure="wss"), None)
        await stream.aclose()
        with pytest.raises(ConnectError, match="connection refused"):
            await open_stream(parse_url("ws://h.test:2/", plain="ws", secure="wss"), None)
    assert seen == [("h.test", 1), ("h.test", 2)]
    with pytest.raises(ConnectError, match="connection refused"):  # real TCP again
        await open_stream(
            parse_url(f"ws://127.0.0.1:{refused_port()}/", plain="ws", secure="wss"), None
        )
    assert len(seen) == 2
