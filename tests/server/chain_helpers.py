"""Building real transactions and accounts for the executing reference server (solders only)."""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any

import orjson
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction

from .helpers import http

if TYPE_CHECKING:
    from solders.account import Account
    from solders.hash import Hash

    from simtrio.server import ReferenceServer

SYSTEM = "11111111111111111111111111111111"
MEMO = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
UPGRADEABLE = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
SOL = 1_000_000_000

BLOCKHASH: Hash = LiteSVM().latest_blockhash()
"""Every session's LiteSVM starts with this blockhash, and it never expires."""


def keypair(n: int) -> Keypair:
    return Keypair.from_seed(bytes([n]) * 32)


def system_account(lamports: int) -> dict[str, Any]:
    """An ``AccountData`` of a plain wallet holding ``lamports``."""
    return {
        "data": {"data": "", "encoding": "base64"},
        "executable": False,
        "lamports": lamports,
        "owner": SYSTEM,
        "space": 0,
    }


def funded(payer: Keypair, lamports: int) -> dict[str, dict[str, Any]]:
    """``modifyAccountStates`` that give ``payer`` a plain wallet holding ``lamports``."""
    return {str(payer.pubkey()): system_account(lamports)}


def account_data(account: Account) -> dict[str, Any]:
    return {
        "data": {"data": base64.b64encode(account.data).decode(), "encoding": "base64"},
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "space": len(account.data),
    }


def transfer_tx(
    payer: Keypair, to: Pubkey, lamports: int, blockhash: Hash = BLOCKHASH
) -> Transaction:
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    return Transaction([payer], Message([ix], payer.pubkey()), blockhash)


def transfer_v0(payer: Keypair, to: Pubkey, lamports: int) -> VersionedTransaction:
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    message = MessageV0.try_compile(payer.pubkey(), [ix], [], BLOCKHASH)
    return VersionedTransaction(message, [payer])


def invoke_tx(payer: Keypair, program: Pubkey, data: bytes) -> Transaction:
    return Transaction(
        [payer], Message([Instruction(program, data, [])], payer.pubkey()), BLOCKHASH
    )


def b64(tx: Transaction | VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


def memo_elf() -> bytes:
    """The SPL Memo program's own ELF, read from LiteSVM's account of it."""
    account = LiteSVM().get_account(Pubkey.from_string(MEMO))
    assert account is not None
    assert account.data[:4] == b"\x7fELF"
    return bytes(account.data)


def injection(program: Pubkey, elf: bytes, deploy_slot: int) -> dict[str, dict[str, Any]]:
    """ProgramData then Program for an upgradeable program, built by hand."""
    svm = LiteSVM()
    programdata, _ = Pubkey.find_program_address([bytes(program)], UPGRADEABLE)
    blob = struct.pack("<IQB", 3, deploy_slot, 0) + bytes(32) + elf
    assert len(blob) == 45 + len(elf)
    program_blob = struct.pack("<I", 2) + bytes(programdata)
    return {
        str(programdata): {
            "data": {"data": base64.b64encode(blob).decode(), "encoding": "base64"},
            "executable": False,
            "lamports": svm.minimum_balance_for_rent_exemption(len(blob)),
            "owner": str(UPGRADEABLE),
            "space": len(blob),
        },
        str(program): {
            "data": {"data": base64.b64encode(program_blob).decode(), "encoding": "base64"},
            "executable": True,
            "lamports": svm.minimum_balance_for_rent_exemption(36),
            "owner": str(UPGRADEABLE),
            "space": 36,
        },
    }


class Rpc:
    """Per-session JSON-RPC over the test's bare HTTP client."""

    def __init__(self, server: ReferenceServer, session_id: str) -> None:
        self._server = server
        self.path = f"/backtest/{session_id}"
        self._ids = 0

    async def raw(self, body: bytes) -> Any:
        status, _, reply = await http(self._server, "POST", self.path, body)
        assert status == 200
        return orjson.loads(reply)

    async def reply(self, method: str, params: Any = None) -> Any:
        self._ids += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": self._ids, "method": method}
        if params is not None:
            request["params"] = params
        return await self.raw(orjson.dumps(request))

    async def call(self, method: str, params: Any = None) -> Any:
        reply = await self.reply(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    async def error(self, method: str, params: Any = None) -> tuple[int, str]:
        reply = await self.reply(method, params)
        assert "result" not in reply, reply
        return reply["error"]["code"], reply["error"]["message"]
