"""``http_get`` against a tiny raw HTTP server on loopback."""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio

from simtrio.errors import ConnectError
from simtrio.transport.http import http_get, http_post_json
from tests.support.fakeserver import read_request_head
from tests.support.inmemory import serve_streams
from tests.transport.peers import connect_error

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator

KEY = "sk-http-secret-42"


@asynccontextmanager
async def http_server(
    response: bytes,
    requests: list[bytes] | None = None,
    *,
    reply: bool = True,
    tls: ssl.SSLContext | None = None,
) -> AsyncGenerator[str]:
    """Answers every request with ``response`` and closes; yields the base URL."""

    async def handler(stream: trio.abc.Stream) -> None:
        data = await read_request_head(stream)
        if data is None:
            return
        if requests is not None:
            requests.append(data)
        if not reply:
            await trio.sleep_forever()
        await stream.send_all(response)
        await stream.aclose()

    if tls is None:
        async with serve_streams(handler) as port:
            yield f"http://127.0.0.1:{port}"
        return
    async with trio.open_nursery() as nursery:
        tls_listeners = await nursery.start(
            partial(
                trio.serve_ssl_over_tcp, handler, 0, tls, host="127.0.0.1", https_compatible=True
            )
        )
        port = tls_listeners[0].transport_listener.socket.getsockname()[1]
        yield f"https://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def test_get_with_content_length_sends_headers_and_target() -> None:
    requests: list[bytes] = []
    body = b'{"ranges": []}'
    response = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    async with http_server(response, requests) as url:
        status, got = await http_get(
            url + "/available-ranges?x=1", headers=[("X-API-Key", KEY)], timeout=5
        )
    assert (status, got) == (200, body)
    (request,) = requests
    assert request.startswith(b"GET /available-ranges?x=1 HTTP/1.1\r\n")
    assert f"x-api-key: {KEY}\r\n".encode() in request.lower()
    assert b"host: 127.0.0.1:" in request.lower()


async def test_https(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    async with http_server(response, tls=server_tls) as url:
        assert await http_get(url, timeout=5, ssl_context=client_tls) == (200, b"ok")
        await connect_error(http_get(url, timeout=5), fatal=True, match="certificate")


async def test_chunked_body() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    async with http_server(response) as url:
        assert await http_get(url, timeout=5) == (200, b"abcde")


async def test_body_until_close() -> None:
    response = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it"
    async with http_server(response) as url:
        assert await http_get(url + "/", timeout=5) == (200, b"all of it")


async def test_error_status_is_returned_not_raised() -> None:
    response = b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope"
    async with http_server(response) as url:
        assert await http_get(url, timeout=5) == (404, b"nope")


async def test_body_over_the_limit() -> None:
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 100
    async with http_server(response) as url:
        assert await http_get(url, timeout=5, max_body=100) == (200, b"x" * 100)
        await connect_error(
            http_get(url, timeout=5, max_body=99), fatal=False, match="^GET .* exceeds 99 bytes"
        )
        await connect_error(
            http_post_json(url, b"{}", timeout=5, max_body=99),
            fatal=False,
            match="^POST .* exceeds 99 bytes",
        )


async def test_malformed_response() -> None:
    async with http_server(b"SPDY/9 what\r\n\r\n") as url:
        with pytest.raises(ConnectError, match="invalid HTTP response"):
            await http_get(url, timeout=5)


async def test_truncated_response() -> None:
    async with http_server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc") as url:
        with pytest.raises(ConnectError):
            await http_get(url, timeout=5)


async def test_timeout(autojump_clock: object) -> None:
    async with http_server(b"", reply=False) as url:
        start = trio.current_time()
        err = await connect_error(
            http_get(url, headers=[("X-API-Key", KEY)], timeout=4), fatal=False, match="timed out"
        )
        assert trio.current_time() - start == pytest.approx(4)
    assert KEY not in str(err)


async def test_connection_refused() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/available-ranges"
    err = await connect_error(http_get(url, timeout=5), fatal=False)
    assert f"127.0.0.1:{port}/available-ranges" in str(err)


@pytest.mark.parametrize("url", ["ws://127.0.0.1/", "ftp://h/", "http://"])
async def test_unusable_url_is_fatal(url: str) -> None:
    await connect_error(http_get(url, timeout=5), fatal=True)


async def test_bad_header_value_is_fatal_and_not_shown() -> None:
    err = await connect_error(
        http_get("http://127.0.0.1:1/", headers=[("X-API-Key", KEY + "\r\n")], timeout=5),
        fatal=True,
    )
    assert KEY not in str(err)


async def test_post_json_sends_the_body_with_its_length() -> None:
    requests: list[bytes] = []
    reply = b'{"jsonrpc":"2.0","id":1,"result":4321}'
    response = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(reply), reply)
    body = b'{"jsonrpc":"2.0","id":1,"method":"getSlot"}'
    async with http_server(response, requests) as url:
        assert await http_post_json(url + "/backtest/s1", body, timeout=5) == (200, reply)
    (request,) = requests
    assert request.startswith(b"POST /backtest/s1 HTTP/1.1\r\n")
    assert b"content-type: application/json\r\n" in request.lower()
    assert b"content-length: %d\r\n" % len(body) in request.lower()


async def test_post_json_failures_are_connect_errors() -> None:
    with pytest.raises(ConnectError, match="cannot POST") as caught:
        await http_post_json("ftp://nowhere", b"{}", timeout=5)
    assert caught.value.fatal
