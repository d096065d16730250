"""A server that echoes the API key back: the plain client keeps it out of everything it makes."""

from __future__ import annotations

import json
import logging

import pytest

from simtrio import wire
from simtrio.client import BacktestClient
from simtrio.errors import ProtocolError, RemoteError
from simtrio.params import Continue, CreateSession
from tests.client.fakes import CREATED, READY, Peer, answer, fake_server
from tests.client.helpers import KEY, assert_key_absent, bounded

ECHO_ERROR = json.dumps({"method": "error", "params": {"Internal": {"error": f"bad key {KEY}"}}})
ECHO_UNKNOWN = json.dumps({"method": "notice", "params": {"text": f"hello {KEY}", KEY: 1}})
ECHO_STATUS = json.dumps({"seqId": 1, "method": "status", "params": {"status": f"x{KEY}"}})


@bounded()
async def test_an_echoed_key_reaches_no_error_repr_or_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, ECHO_UNKNOWN, ECHO_STATUS, READY)
        await peer.recv()
        await peer.send(f"not json {KEY}".encode())

    async with fake_server(script) as server:
        client = BacktestClient(server.url, KEY)
        async with client.create_session(CreateSession(1, end_slot=4)) as session:
            unknown = await session.next_response()
            status = await session.next_response()
            assert isinstance(unknown, wire.UnknownResponse)
            assert isinstance(status, wire.Status)
            for response in (unknown, status):
                assert KEY not in repr(response)
                assert KEY not in str(response)
            assert "<redacted>" in repr(unknown)
            await session.ensure_ready()
            with pytest.raises(ProtocolError) as info:
                await session.advance(Continue(1))
            assert_key_absent(info.value)
    assert KEY not in caplog.text


@bounded()
async def test_an_echoed_key_in_an_error_reply() -> None:
    async with fake_server(answer(ECHO_ERROR)) as server:
        client = BacktestClient(server.url, KEY)
        with pytest.raises(RemoteError) as info:
            async with client.create_session(CreateSession(1, end_slot=4)):
                pass
        assert_key_absent(info.value)
        assert "<redacted>" in str(info.value)
        with pytest.raises(RemoteError) as info:
            await client.create_sessions(CreateSession(1, end_slot=4, parallel=True))
        assert_key_absent(info.value)
