"""The sans-IO JSON-RPC shaping: request bodies, replies, and conversions at the boundary."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction

from simtrio.errors import InvalidParams, ProtocolError, RpcError
from simtrio.params import Continue
from simtrio.wire import jsonrpc
from simtrio.wire.types import AccountData, EncodedBinary

SYSTEM = "11111111111111111111111111111111"
PAYER = Keypair.from_seed(bytes(range(32)))
DEST = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")


def _transfer() -> Transaction:
    ix = transfer(TransferParams(from_pubkey=PAYER.pubkey(), to_pubkey=DEST, lamports=5))
    return Transaction.new_signed_with_payer([ix], PAYER.pubkey(), [PAYER], Hash.default())


def test_request_body_is_json_rpc_2() -> None:
    body = jsonrpc.encode_request(7, "getBalance", [SYSTEM])
    assert orjson.loads(body) == {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "getBalance",
        "params": [SYSTEM],
    }
    assert "params" not in orjson.loads(jsonrpc.encode_request(1, "getSlot"))


def test_request_with_unencodable_params_is_invalid() -> None:
    with pytest.raises(InvalidParams):
        jsonrpc.encode_request(1, "x", [object()])


def test_reply_result_and_error() -> None:
    assert jsonrpc.decode_response(b'{"jsonrpc":"2.0","id":1,"result":null}') is None
    with pytest.raises(RpcError) as info:
        jsonrpc.decode_response(
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"failed","data":{"x":1}}}'
        )
    assert (info.value.code, info.value.message, info.value.data) == (-32002, "failed", {"x": 1})


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"jsonrpc":"2.0","id":1}',
        b'{"jsonrpc":"2.0","id":1,"error":"x"}',
        b'{"jsonrpc":"2.0","id":1,"error":{"code":"1","message":"m"}}',
    ],
)
def test_malformed_replies_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        jsonrpc.decode_response(body)


def test_rpc_error_forms() -> None:
    plain = RpcError("session has no rpc endpoint")
    assert plain.code is None
    assert plain.message == "session has no rpc endpoint"
    assert str(plain) == "session has no rpc endpoint"
    coded = RpcError(-32601, "method not found", None)
    assert coded.code == -32601
    assert "-32601" in str(coded)


def test_addresses_and_signatures() -> None:
    key = Pubkey.new_unique()
    assert jsonrpc.address_text(key) == str(key)
    assert jsonrpc.address_text(SYSTEM) == SYSTEM
    for bad in ("nope", "1" * 45, 5):
        with pytest.raises(InvalidParams):
            jsonrpc.address_text(bad)
    sig = Signature.new_unique()
    assert jsonrpc.signature_text(sig) == str(sig)
    with pytest.raises(InvalidParams):
        jsonrpc.signature_text(SYSTEM)


def test_transactions_of_every_kind_become_the_same_base64() -> None:
    tx = _transfer()
    expected = base64.b64encode(bytes(tx)).decode()
    assert jsonrpc.transaction_base64(tx) == expected
    assert jsonrpc.transaction_base64(bytes(tx)) == expected
    assert jsonrpc.transaction_base64(expected) == expected
    versioned = VersionedTransaction.from_legacy(tx)
    assert base64.b64decode(jsonrpc.transaction_base64(versioned)) == bytes(versioned)
    with pytest.raises(InvalidParams, match=r"transactions\[2\]"):
        Continue(transactions=[tx, expected, 3])  # type: ignore[list-item]


def test_accounts_become_account_data() -> None:
    account = Account(lamports=9, data=b"\x00\x01\x02", owner=Pubkey.default(), executable=True)
    data = jsonrpc.account_data(account)
    assert data == AccountData(EncodedBinary("AAEC"), True, 9, SYSTEM, 3)
    assert jsonrpc.account_data_json(data) == {
        "data": {"data": "AAEC", "encoding": "base64"},
        "executable": True,
        "lamports": 9,
        "owner": SYSTEM,
        "space": 3,
    }


def test_continue_takes_solders_accounts_keyed_by_pubkey_or_str() -> None:
    a = Pubkey.from_bytes(bytes([1] * 32))
    b = Pubkey.from_bytes(bytes([2] * 32))
    account = Account(lamports=1, data=b"", owner=Pubkey.default())
    wire = AccountData(EncodedBinary(""), False, 2, SYSTEM, 0)
    cont = Continue(modify_account_states={b: account, str(a): wire})  # type: ignore[dict-item]
    assert list(cont.modify_account_states) == [str(a), str(b)]
    assert cont.modify_account_states[str(b)].lamports == 1
    with pytest.raises(InvalidParams, match=str(a)):
        Continue(modify_account_states={a: {"lamports": 1}})  # type: ignore[dict-item]


def _account_json(**extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "lamports": 5,
        "data": ["AQI=", "base64"],
        "owner": SYSTEM,
        "executable": False,
        "rentEpoch": 2**64 - 1,
        "space": 2,
    }
    obj.update(extra)
    return obj


def test_account_results() -> None:
    wrapped = {"context": {"slot": 3}, "value": _account_json()}
    account = jsonrpc.account_result(wrapped)
    assert account == Account(5, b"\x01\x02", Pubkey.default(), False, 2**64 - 1)
    assert jsonrpc.account_result({"context": {"slot": 3}, "value": None}) is None
    many = jsonrpc.multiple_accounts_result(
        {"context": {"slot": 3}, "value": [None, _account_json()]}, 2
    )
    assert many == [None, account]
    key = Pubkey.new_unique()
    pairs = jsonrpc.program_accounts_result([{"pubkey": str(key), "account": _account_json()}])
    assert pairs == [(key, account)]
    with pytest.raises(ProtocolError):
        jsonrpc.account_result({"context": {}, "value": _account_json(data=["!!", "base64"])})
    with pytest.raises(ProtocolError):
        jsonrpc.multiple_accounts_result({"context": {}, "value": [None]}, 2)


def test_scalar_results() -> None:
    assert jsonrpc.int_result(42, "getSlot") == 42
    assert jsonrpc.balance_result({"context": {"slot": 1}, "value": 7}) == 7
    blockhash = Hash.new_unique()
    result = {"context": {"slot": 1}, "value": {"blockhash": str(blockhash), "x": 1}}
    assert jsonrpc.blockhash_result(result) == blockhash
    sig = Signature.new_unique()
    assert jsonrpc.signature_result(str(sig), "sendTransaction") == sig
    for bad in (-1, True, "1"):
        with pytest.raises(ProtocolError):
            jsonrpc.int_result(bad, "getSlot")
    with pytest.raises(ProtocolError):
        jsonrpc.signature_result(SYSTEM, "requestAirdrop")


def test_signature_statuses() -> None:
    err = {"InstructionError": [0, {"Custom": 1}]}
    result = {
        "context": {"slot": 9},
        "value": [
            None,
            {"slot": 9, "confirmations": None, "err": None, "confirmationStatus": "confirmed"},
            {"slot": 9, "err": err},
        ],
    }
    unknown, ok, failed = jsonrpc.signature_statuses_result(result, 3)
    assert unknown is None
    assert ok is not None
    assert ok.slot == 9
    assert ok.err is None
    assert failed is not None
    assert failed.err is not None


def test_simulation_and_transaction_results() -> None:
    sim = jsonrpc.simulation_result(
        {"context": {"slot": 1}, "value": {"err": None, "logs": ["a"], "unitsConsumed": 150}}
    )
    assert sim == jsonrpc.SimulationResult(None, ["a"], 150)
    with pytest.raises(ProtocolError):
        jsonrpc.simulation_result({"context": {}, "value": {"logs": [1]}})
    assert jsonrpc.transaction_result(None) is None
    assert jsonrpc.transaction_result({"slot": 1}) == {"slot": 1}


def test_message_roundtrip_for_reference() -> None:
    # A VersionedTransaction built from a message signs and serializes as solders does.
    msg = Message.new_with_blockhash(
        [transfer(TransferParams(from_pubkey=PAYER.pubkey(), to_pubkey=DEST, lamports=1))],
        PAYER.pubkey(),
        Hash.default(),
    )
    tx = Transaction([PAYER], msg, Hash.default())
    assert Transaction.from_bytes(base64.b64decode(jsonrpc.transaction_base64(tx))) == tx
