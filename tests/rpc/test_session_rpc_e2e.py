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


@bounded(20)
async def test_every_method_against_the_executing_server() -> None:
    from solders.account import Account
    from solders.keypair import Keypair
    from solders.pubkey import Pubkey
    from solders.system_program import ID as SYSTEM, TransferParams, transfer
    from solders.transaction import Transaction, VersionedTransaction

    token = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
    async with simtrio.server.serve(api_key=KEY) as server:
        client = BacktestClient(server.url, KEY, request_timeout=10)
        async with (
            client.create_session(CreateSession(4000, end_slot=4020)) as session,
            session.rpc() as rpc,
        ):
            await session.ensure_ready()
            payer = Keypair.from_seed(bytes([5] * 32))
            other = Keypair.from_seed(bytes([6] * 32)).pubkey()
            airdrop = await rpc.request_airdrop(payer.pubkey(), 10**9)
            assert await rpc.get_balance(payer.pubkey()) == 10**9
            (status,) = await rpc.get_signature_statuses([airdrop])
            assert status is not None

            blockhash = await rpc.get_latest_blockhash()
            ix = transfer(
                TransferParams(from_pubkey=payer.pubkey(), to_pubkey=other, lamports=10**6)
            )
            tx = Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer], blockhash)
            simulated = await rpc.simulate_transaction(VersionedTransaction.from_legacy(tx))
            assert simulated.err is None
            assert simulated.units_consumed is not None
            assert await rpc.get_balance(other) == 0  # simulating changed nothing
            signature = await rpc.send_transaction(tx)
            assert signature == tx.signatures[0]
            assert await rpc.get_balance(other) == 10**6
            got = await rpc.get_transaction(signature)
            assert got is not None
            assert got["meta"]["err"] is None
            assert await rpc.get_transaction(Keypair().sign_message(b"x")) is None

            # A failing transaction executes as a failure: too many lamports.
            broke = Keypair.from_seed(bytes([7] * 32))
            await rpc.request_airdrop(broke.pubkey(), 10**7)
            big = transfer(
                TransferParams(from_pubkey=broke.pubkey(), to_pubkey=other, lamports=10**8)
            )
            bad = Transaction.new_signed_with_payer([big], broke.pubkey(), [broke], blockhash)
            await session.advance(Continue(1, transactions=[bad]))
            (failed,) = await rpc.get_signature_statuses([bad.signatures[0]])
            assert failed is not None
            assert failed.err is not None

            account = await rpc.get_account_info(token)
            assert account is not None
            assert account.executable
            assert await rpc.get_account_info(Pubkey.new_unique()) is None
            many = await rpc.get_multiple_accounts([token, other])
            assert many[0] == account
            assert many[1] is not None
            assert many[1].lamports == 10**6
            owned = dict(await rpc.get_program_accounts(SYSTEM))
            assert owned[other].lamports == 10**6
            assert all(acc.owner == SYSTEM for acc in owned.values())
            rent = await rpc.get_minimum_balance_for_rent_exemption(0)
            assert rent > 0

            target = Pubkey.from_bytes(bytes([8] * 32))
            await rpc.modify_accounts({target: Account(rent + 1, b"", SYSTEM)})
            assert await rpc.get_balance(target) == rent + 1

            with pytest.raises(RpcError) as info:
                await rpc.send_transaction(b"\x01\x02")
            assert info.value.code is not None


def test_plain_session_without_endpoint_is_rpc_error() -> None:
    from typing import Any, cast

    from simtrio.backtest_session import BacktestSession

    session = BacktestSession(cast("Any", None), None, rpc_base="http://127.0.0.1:1")
    assert session.rpc_url is None
    with pytest.raises(RpcError, match="session has no rpc endpoint"):
        session.rpc()
