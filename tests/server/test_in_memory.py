"""The server's listener seam: in memory on the virtual clock, TCP otherwise.

The suite's ``conftest`` serves reference servers in memory for every test that uses
``autojump_clock`` (unless it is marked ``loopback``); these tests check that it does, that
clients of every kind reach such a server at its usual URLs, and that a dropped in-memory
connection really ends for the peer.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from simtrio import CreateSession, events, open_managed_session
from simtrio.server import ReferenceServer, run_server, serve
from simtrio.server.serving import abort_stream
from tests.managed.driving import drive
from tests.support.inmemory import reference_servers_in_memory

from .helpers import connect, create, http, open_raw, open_session, wait_until


async def _listens_on_tcp(server: ReferenceServer) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def test_on_the_virtual_clock_the_server_serves_in_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve(seed=3) as server:
        assert server.url == f"ws://127.0.0.1:{server.port}"
        assert server.http_url == f"http://127.0.0.1:{server.port}"
        assert not await _listens_on_tcp(server)  # the port is reserved, nobody listens
        assert (await http(server, "GET", "/health"))[0] == 200
        async with connect(server) as control:
            await open_session(control, create(0, 9))
        create_session = CreateSession(100, slot_count=3, parallel=False)
        async with open_managed_session(server.url, "key", create_session) as session:
            seen = await drive(session, 3)
        assert isinstance(seen[-1], events.Completed)
        await wait_until(lambda: server.tcp_connections == 0)  # every connection was served


async def test_off_the_virtual_clock_the_server_listens_on_tcp() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            assert await _listens_on_tcp(server)


@pytest.mark.loopback
async def test_loopback_tests_listen_on_tcp_on_the_virtual_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as server:
        assert await _listens_on_tcp(server)


async def test_run_server_listens_on_tcp_even_under_an_in_memory_listener() -> None:
    # Its clients run in other tasks: an opener put in place inside its own would not reach them.
    with trio.fail_after(5), reference_servers_in_memory():
        async with trio.open_nursery() as nursery:
            server: ReferenceServer = await nursery.start(run_server)
            assert await _listens_on_tcp(server)
            nursery.cancel_scope.cancel()


async def test_in_memory_the_server_runs_on_127_0_0_1_port_0_only() -> None:
    with reference_servers_in_memory(), pytest.raises(ValueError, match="port 0"):
        async with serve(port=8899):
            pass


async def test_a_restart_drops_in_memory_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as server, connect(server) as control:
        await open_session(control, create(0, 9))
        server.restart()
        assert await control.expect_closed() is not None


async def test_an_aborted_memory_stream_ends_for_the_peer() -> None:
    client, server = trio.testing.memory_stream_pair()
    abort_stream(server)
    assert await client.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"x")
    abort_stream(server)  # again, and with the peer gone: nothing to raise
    await client.aclose()
    abort_stream(server)


async def test_raw_streams_reach_an_in_memory_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as server:
        stream = await open_raw(server)
        async with stream:
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = bytearray()
            while chunk := await stream.receive_some():
                reply += chunk
        assert bytes(reply).startswith(b"HTTP/1.1 200 ")
