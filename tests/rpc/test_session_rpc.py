"""SessionRpc over fake transports: typed calls, the error map, retries and deadlines."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import (
    ConnectError,
    InvalidParams,
    ProtocolError,
    RequestTimeout,
    RpcError,
    RpcHttpError,
    SimtrioError,
)
from simtrio.rpc import SessionRpc, modify_program, open_session_rpc
from simtrio.wire.programs import programdata_address
from simtrio.wire.redact import redactor_for
from simtrio.wire.types import AccountData, EncodedBinary

URL = "http://rpc.test/backtest/backtest_1"
SYSTEM = "11111111111111111111111111111111"

Handler = Callable[[str, Any], Any]


class FakeRpc:
    """A JSON-RPC endpoint: ``handler(method, params)`` returns a result or raises."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        assert body["jsonrpc"] == "2.0"
        assert request.headers["content-type"] == "application/json"
        self.calls.append((body["method"], body.get("params")))
        try:
            result = self.handler(body["method"], body.get("params"))
        except RpcError as exc:
            error = {"code": exc.code, "message": exc.message, "data": exc.data}
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "error": error})
        if isinstance(result, httpx.Response):
            return result
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})


def _open(fake: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("rng", random.Random(0))
    return open_session_rpc(URL, transport=httpx.MockTransport(fake), **kwargs)


def _ctx(value: Any) -> dict[str, Any]:
    return {"context": {"slot": 4001}, "value": value}


ACCOUNT_JSON = {
    "lamports": 10,
    "data": ["AAE=", "base64"],
    "owner": SYSTEM,
    "executable": False,
    "rentEpoch": 0,
}


async def test_typed_methods_send_standard_requests() -> None:
    blockhash = Hash.new_unique()
    sig = Signature.new_unique()
    key = Pubkey.new_unique()
    results: dict[str, Any] = {
        "getSlot": 4001,
        "getLatestBlockhash": _ctx({"blockhash": str(blockhash), "lastValidBlockHeight": 9}),
        "getBalance": _ctx(77),
        "getAccountInfo": _ctx(ACCOUNT_JSON),
        "getMultipleAccounts": _ctx([ACCOUNT_JSON, None]),
        "getProgramAccounts": [{"pubkey": str(key), "account": ACCOUNT_JSON}],
        "getMinimumBalanceForRentExemption": 890880,
        "getSignatureStatuses": _ctx([None]),
        "getTransaction": None,
        "simulateTransaction": _ctx({"err": None, "logs": [], "unitsConsumed": 3}),
        "sendTransaction": str(sig),
        "requestAirdrop": str(sig),
        "modifyAccounts": None,
    }
    fake = FakeRpc(lambda method, params: results[method])
    account = Account(10, b"\x00\x01", Pubkey.default(), False, 0)
    async with _open(fake) as rpc:
        assert isinstance(rpc, SessionRpc)
        assert await rpc.get_slot() == 4001
        assert await rpc.get_latest_blockhash() == blockhash
        assert await rpc.get_balance(key) == 77
        assert await rpc.get_account_info(str(key)) == account
        assert await rpc.get_multiple_accounts([key, key]) == [account, None]
        assert await rpc.get_program_accounts(SYSTEM) == [(key, account)]
        assert await rpc.get_minimum_balance_for_rent_exemption(0) == 890880
        assert await rpc.get_signature_statuses([sig]) == [None]
        assert await rpc.get_transaction(sig) is None
        sim = await rpc.simulate_transaction(b"\x01")
        assert sim.units_consumed == 3
        assert await rpc.send_transaction("AQ==") == sig
        assert await rpc.request_airdrop(key, 5) == sig
        await rpc.modify_accounts({key: account})
        assert await rpc.call("getSlot") == 4001
    sent = dict(fake.calls)
    assert sent["getAccountInfo"] == [str(key), {"encoding": "base64"}]
    assert sent["sendTransaction"] == ["AQ==", {"encoding": "base64"}]
    assert sent["requestAirdrop"] == [str(key), 5]
    assert sent["getTransaction"][0] == str(sig)
    assert sent["getTransaction"][1]["encoding"] == "json"
    assert sent["modifyAccounts"] == [
        {
            str(key): {
                "data": {"data": "AAE=", "encoding": "base64"},
                "executable": False,
                "lamports": 10,
                "owner": SYSTEM,
                "space": 2,
            }
        }
    ]


async def test_json_rpc_error_becomes_rpc_error() -> None:
    def handler(method: str, params: Any) -> Any:
        raise RpcError(-32601, "method not found", {"method": method})

    fake = FakeRpc(handler)
    async with _open(fake) as rpc:
        with pytest.raises(RpcError) as info:
            await rpc.get_slot()
    assert info.value.code == -32601
    assert info.value.data == {"method": "getSlot"}
    assert len(fake.calls) == 1  # a JSON-RPC error is an answer: never retried


async def test_http_status_is_rpc_http_error() -> None:
    fake = FakeRpc(lambda m, p: httpx.Response(503, text="busy"))
    async with _open(fake) as rpc:
        with pytest.raises(RpcHttpError) as info:
            await rpc.get_balance(SYSTEM)
    assert info.value.status == 503
    assert isinstance(info.value, RpcError)


async def test_non_json_reply_is_protocol_error() -> None:
    fake = FakeRpc(lambda m, p: httpx.Response(200, text="<html>"))
    async with _open(fake) as rpc:
        with pytest.raises(ProtocolError):
            await rpc.get_slot()


class Flaky:
    """Refuses the first ``failures`` requests at the transport, then answers."""

    def __init__(self, failures: int, result: Any = 1) -> None:
        self.failures = failures
        self.result = result
        self.attempts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise httpx.ConnectError("connection refused", request=request)
        body = orjson.loads(request.content)
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": 1})


async def test_reads_retry_after_transport_errors(autojump_clock: trio.testing.MockClock) -> None:
    flaky = Flaky(2)
    start = trio.current_time()
    async with _open(flaky, backoff=BackoffPolicy(initial=1.0, jitter="none")) as rpc:
        assert await rpc.get_slot() == 1
    assert flaky.attempts == 3
    assert trio.current_time() - start == pytest.approx(1.0 + 2.0)


async def test_read_retries_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    flaky = Flaky(100)
    async with _open(flaky, read_retries=2) as rpc:
        with pytest.raises(ConnectError):
            await rpc.get_slot()
    assert flaky.attempts == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda rpc: rpc.send_transaction(b"\x01"),
        lambda rpc: rpc.request_airdrop(SYSTEM, 1),
        lambda rpc: rpc.modify_accounts({}),
        lambda rpc: rpc.call("someWrite", []),
    ],
)
async def test_writes_are_never_retried(
    call: Callable[[SessionRpc], Any], autojump_clock: trio.testing.MockClock
) -> None:
    flaky = Flaky(1)
    async with _open(flaky) as rpc:
        with pytest.raises(ConnectError):
            await call(rpc)
    assert flaky.attempts == 1


async def test_deadline_is_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def stuck(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError

    class Stuck(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await stuck(request)

    async with open_session_rpc(URL, timeout=5.0, transport=Stuck()) as rpc:
        start = trio.current_time()
        with pytest.raises(RequestTimeout):
            await rpc.get_slot()
        assert trio.current_time() - start == pytest.approx(5.0)


async def test_unreachable_endpoint_is_connect_error() -> None:
    # Port 9 on 127.0.0.1 (discard) is closed on test machines: the connect is refused.
    async with open_session_rpc("http://127.0.0.1:9/rpc", read_retries=0) as rpc:
        with pytest.raises(ConnectError) as info:
            await rpc.get_slot()
    assert not any(type(e).__module__.startswith("httpx") for e in _chain(info.value))


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and item not in out:
        out.append(item)
        # What a traceback shows: the cause, else an unsuppressed context.
        item = item.__cause__ or (None if item.__suppress_context__ else item.__context__)
    return out


async def test_bad_arguments_fail_before_io() -> None:
    fake = FakeRpc(lambda m, p: 1)
    async with _open(fake) as rpc:
        for call in (
            lambda: rpc.get_balance("nope"),
            lambda: rpc.get_multiple_accounts("11111111111111111111111111111111"),
            lambda: rpc.get_minimum_balance_for_rent_exemption(-1),
            lambda: rpc.request_airdrop(SYSTEM, -5),
            lambda: rpc.send_transaction(3),  # type: ignore[arg-type]
            lambda: rpc.modify_accounts({SYSTEM: 1}),  # type: ignore[dict-item]
        ):
            with pytest.raises(InvalidParams):
                await call()
    assert fake.calls == []
    with pytest.raises(InvalidParams):
        async with open_session_rpc("ws://x/rpc"):
            pass


async def test_observer_sees_answered_calls() -> None:
    seen: list[tuple[str, Any, Any, RpcError | None]] = []

    def handler(method: str, params: Any) -> Any:
        if method == "getSlot":
            return 5
        raise RpcError(-32000, "nope")

    async with _open(FakeRpc(handler), observer=lambda *a: seen.append(a)) as rpc:
        await rpc.get_slot()
        with pytest.raises(RpcError):
            await rpc.call("x", [1])
    assert seen[0] == ("getSlot", None, 5, None)
    assert seen[1][0:3] == ("x", [1], None)
    assert isinstance(seen[1][3], RpcError)


async def test_modify_program_asks_rent_and_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts = {"n": 0}

    def handler(method: str, params: Any) -> Any:
        assert method == "getMinimumBalanceForRentExemption"
        attempts["n"] += 1
        if attempts["n"] <= 2:
            return httpx.Response(502, text="bad gateway")
        return 1000 + params[0]

    program = Keypair().pubkey()
    elf = b"\x7fELF" + bytes(20)
    async with _open(FakeRpc(handler)) as rpc:
        states = await modify_program(rpc, program, elf, start_slot=4000, create=True)
    data = programdata_address(program)
    assert list(states) == [data, program]
    assert states[data].lamports == 1000 + 45 + len(elf)
    assert states[program].lamports == 1000 + 36
    assert isinstance(states[program], AccountData)
    assert states[program].data != EncodedBinary("")


async def test_modify_program_gives_up_after_ten_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flaky = Flaky(1000)
    start = trio.current_time()
    async with _open(flaky, read_retries=0) as rpc:
        with pytest.raises(SimtrioError):
            await modify_program(rpc, Pubkey.new_unique(), b"\x7fELF", start_slot=1)
    assert flaky.attempts == 11
    # Full jitter: every delay is at most min(10, 2**n) seconds.
    assert trio.current_time() - start <= 1 + 2 + 4 + 8 + 10 * 6


async def test_an_echoed_api_key_never_reaches_a_result_or_an_error() -> None:
    key = "sk-echoed-secret-0123"

    def handler(method: str, params: Any) -> Any:
        if method == "getSlot":
            raise RpcError(-32000, f"bad key {key}", {"key": key})
        if method == "getHealth":
            return httpx.Response(500, text=f"denied for {key}")
        return {"echo": key}

    transport = httpx.MockTransport(FakeRpc(handler))
    async with open_session_rpc(URL, transport=transport, redactor=redactor_for((key,))) as rpc:
        assert key not in repr(await rpc.call("whatever"))
        with pytest.raises(RpcError) as caught:
            await rpc.get_slot()
        assert key not in str(caught.value)
        assert key not in repr(caught.value.data)
        with pytest.raises(RpcHttpError) as http_error:
            await rpc.call("getHealth")
        assert key not in str(http_error.value)
    async with open_session_rpc(URL, transport=transport) as plain:  # no key known: as sent
        assert key in repr(await plain.call("whatever"))
