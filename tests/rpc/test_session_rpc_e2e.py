"""``session.rpc()`` on every kind of session, against the embedded reference server."""

from __future__ import annotations

import pytest

import simtrio.server
from simtrio.client import BacktestClient
from simtrio.errors import RpcError
from simtrio.managed.config import ManagedConfig
from simtrio.managed.parallel import open_parallel_session
from simtrio.managed.session import open_managed_session
from simtrio.params import Continue, CreateSession
from simtrio.rpc import SessionRpc, open_session_rpc
from tests.client.helpers import bounded

KEY = "rpc-e2e-key"
CONFIG = ManagedConfig(rng_seed=3)


@bounded(10)
async def test_plain_session_rpc_follows_the_session() -> None:
    async with simtrio.server.serve(api_key=KEY) as server:
        client = BacktestClient(server.url, KEY, request_timeout=5)
        async with client.create_session(CreateSession(4000, end_slot=4010)) as session:
            assert (
                session.rpc_url == f"http://127.0.0.1:{server.port}/backtest/{session.session_id}"
            )
            await session.ensure_ready()
            async with session.rpc() as rpc:
                assert isinstance(rpc, SessionRpc)
                first = await rpc.get_slot()
                await session.advance(Continue(2))
                assert await rpc.get_slot() == first + 2
                with pytest.raises(RpcError) as info:
                    await rpc.call("noSuchMethod", [])
                assert info.value.code == -32601


@bounded(10)
async def test_managed_and_sub_session_rpc() -> None:
    async with simtrio.server.serve(api_key=KEY) as server:
        create = CreateSession(4000, end_slot=4005)
        async with (
            open_managed_session(server.url, KEY, create, config=CONFIG) as session,
            session.rpc() as rpc,
        ):
            assert await rpc.get_slot() >= 4000
        parallel = CreateSession(1000, end_slot=1549)
        async with open_parallel_session(server.url, KEY, parallel, config=CONFIG) as run:
            subs = run.take_sub_sessions()
            assert len(subs) > 1
            for sub in subs:
                async with sub.rpc() as rpc:
                    slot = await rpc.get_slot()
                assert sub.range[0] <= slot + 1


@bounded(10)
async def test_keep_alive_reuses_one_pool() -> None:
    async with simtrio.server.serve(api_key=KEY) as server:
        client = BacktestClient(server.url, KEY, request_timeout=5)
        async with client.create_session(CreateSession(4000, end_slot=4010)) as session:
            url = session.rpc_url
            assert url is not None
            async with open_session_rpc(url) as rpc:
                slots = [await rpc.get_slot() for _ in range(5)]
            assert len(set(slots)) == 1


async def test_no_endpoint_is_rpc_error() -> None:
    from simtrio.managed.config import SessionInfo
    from simtrio.rpc.session import session_rpc

    with pytest.raises(RpcError, match="session has no rpc endpoint"):
        session_rpc(SessionInfo("s", ""), CONFIG)
