"""``logsSubscribe`` on the data plane: synthetic and user logs, replay, zstd, terminals."""

from __future__ import annotations

import orjson
import trio

from simtrio.server.config import ServerConfig
from simtrio.server.pubsub import decode_logs_request

from .chain_helpers import SOL, SYSTEM, Rpc, funded, keypair
from .expected import expected_logs, terminal
from .helpers import (
    ATOKEN,
    TOKEN,
    ZstdReader,
    data_plane,
    logs_subscribe,
    read_until_terminals,
    run_to_end,
    session_on,
    subscribe,
    wait_until,
)


async def test_synthetic_transactions_produce_logs_notifications() -> None:
    config = ServerConfig(seed=41, failure_rate=0.3)
    with trio.fail_after(5):
        async with (
            session_on(config, 4000, 4007) as (server, control, session_id),
            data_plane(server, session_id) as data,
        ):
            await data.send(logs_subscribe(5, TOKEN))
            await data.expect('{"jsonrpc":"2.0","id":5,"result":1}')
            await wait_until(lambda: server.sessions[session_id].subscriptions == 1)
            await run_to_end(control, 8)
            frames = await read_until_terminals(data, {1})
    expected = expected_logs(config, TOKEN, range(4000, 4008), 1)
    assert frames == [*expected, terminal(1)]
    assert len(expected) > 4
    values = [orjson.loads(f)["params"]["result"]["value"] for f in expected]
    assert any(v["err"] is not None for v in values)
    assert all(v["logs"][0].startswith("Program ") for v in values)


async def test_logs_replay_inclusively_compressed() -> None:
    config = ServerConfig(seed=42)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4009) as (server, control, session_id):
            await run_to_end(control, 10)
            async with data_plane(server, session_id) as data:
                await data.send(logs_subscribe(1, ATOKEN, compression="zstd", replayFromSlot=4004))
                await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
                frames = await read_until_terminals(data, {1}, ZstdReader())
    assert frames == [*expected_logs(config, ATOKEN, range(4004, 4010), 1), terminal(1)]


async def test_logs_unsubscribe_and_errors() -> None:
    with trio.fail_after(5):
        async with (
            session_on(None, 4000, 4009) as (server, _control, session_id),
            data_plane(server, session_id) as data,
        ):
            await data.send(logs_subscribe(1, TOKEN))
            await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
            unsubscribe = '{"jsonrpc":"2.0","id":2,"method":"logsUnsubscribe","params":[1]}'
            await data.send(unsubscribe)
            await data.expect('{"jsonrpc":"2.0","id":2,"result":true}')
            await data.send(unsubscribe)
            await data.expect('{"jsonrpc":"2.0","id":2,"result":false}')
            await data.send(logs_subscribe(3, "not-an-address"))
            await data.expect(
                '{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"invalid program id"}}'
            )
            for bad in (
                '{"jsonrpc":"2.0","id":4,"method":"logsSubscribe","params":["all"]}',
                '{"jsonrpc":"2.0","id":4,"method":"logsSubscribe","params":[{"mentions":[]}]}',
                '{"jsonrpc":"2.0","id":4,"method":"logsUnsubscribe","params":["x"]}',
            ):
                await data.send(bad)
                reply = await data.recv_json()
                assert (reply["id"], reply["error"]["code"]) == (4, -32602)
            await data.send('{"jsonrpc":"2.0","method":"logsSubscribe","params":[]}')
            reply = await data.recv_json()
            assert (reply["id"], reply["error"]["code"]) == (None, -32602)
            replay = logs_subscribe(5, TOKEN, replayFromSlot="soon")
            await data.send(replay)
            assert (await data.recv_json())["error"]["code"] == -32602
            await data.send(logs_subscribe(6, TOKEN))
            await data.expect('{"jsonrpc":"2.0","id":6,"result":2}')


async def test_user_transactions_reach_logs_of_the_programs_among_their_keys() -> None:
    payer, to = keypair(60), keypair(61).pubkey()
    with trio.fail_after(5):
        async with session_on(None, 4000, 4009) as (server, _control, session_id):
            rpc = Rpc(server, session_id)
            async with data_plane(server, session_id) as data:
                await data.send(logs_subscribe(1, str(to)))
                await data.send(logs_subscribe(2, SYSTEM))
                await data.send(subscribe(3, SYSTEM))
                await data.recv_texts(3)
                await rpc.call("modifyAccounts", [funded(payer, SOL)])
                signature = await rpc.call("requestAirdrop", [str(to), SOL])
                logs, transaction = await data.recv_json(), await data.recv_json()
                # Nothing for the wallet: it is no program.
                await data.send(logs_subscribe(4, SYSTEM))
                assert await data.recv_json() == {"jsonrpc": "2.0", "id": 4, "result": 4}
    assert logs["params"]["subscription"] == 2
    assert logs["params"]["result"]["value"]["signature"] == signature
    assert logs["params"]["result"]["context"] == {"slot": 4000}
    assert transaction["params"]["subscription"] == 3
    assert transaction["params"]["result"]["transaction"]["signatures"] == [signature]


def test_decoding_is_only_for_logs_methods() -> None:
    assert decode_logs_request('{"jsonrpc":"2.0","id":1,"method":"transactionSubscribe"}') is None
    assert decode_logs_request("not json but mentions logs") is None
    assert decode_logs_request('["logsSubscribe"]') is None
    decoded = decode_logs_request(
        b'{"id":1,"method":"logsSubscribe","params":[{"mentions":["a"]},{"replay_from_slot":3}]}'
    )
    assert decoded is not None
    assert decoded.replay_from_slot == 3  # type: ignore[union-attr]
