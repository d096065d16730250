"""Program injection builders: hand-computed bytes, solders' layouts, and a LiteSVM run."""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING

import pytest
from solders.account import Account
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rent import Rent
from solders.transaction import Transaction

from simtrio.errors import InvalidParams
from simtrio.wire.programs import (
    BPF_LOADER_UPGRADEABLE,
    PROGRAMDATA_HEADER_LEN,
    build_program_account,
    build_program_injection,
    deploy_slot_for,
    programdata_address,
    programdata_blob,
    rent_exempt_minimum,
)

if TYPE_CHECKING:
    from simtrio.wire.types import AccountData

TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


def _bytes(account: AccountData) -> bytes:
    return base64.b64decode(account.data.data)


def test_programdata_header_by_hand() -> None:
    elf = b"\x7fELF-body"
    blob = programdata_blob(elf, deploy_slot=0x0102030405060708)
    assert blob[:4] == b"\x03\x00\x00\x00"
    assert blob[4:12] == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert blob[12] == 0
    assert blob[13:45] == bytes(32)
    assert blob[45:] == elf
    authority = Pubkey.from_bytes(bytes(range(32)))
    with_authority = programdata_blob(elf, deploy_slot=1, upgrade_authority=authority)
    assert with_authority[12] == 1
    assert with_authority[13:45] == bytes(range(32))
    assert len(with_authority) == PROGRAMDATA_HEADER_LEN + len(elf)


def test_injection_account() -> None:
    program = Pubkey.new_unique()
    elf = b"\x7fELF" + bytes(100)
    states = build_program_injection(program, elf, deploy_slot=9, lamports=123)
    ((address, account),) = states.items()
    expected_address, _ = Pubkey.find_program_address([bytes(program)], BPF_LOADER_UPGRADEABLE)
    assert address == expected_address == programdata_address(str(program))
    assert account.owner == "BPFLoaderUpgradeab1e11111111111111111111111"
    assert not account.executable
    assert account.lamports == 123
    assert account.space == 45 + len(elf) == len(_bytes(account))
    assert _bytes(account)[4:12] == struct.pack("<Q", 9)


def test_program_account_matches_litesvm_layout() -> None:
    # LiteSVM's own Token program is an upgradeable Program account: same 36 bytes.
    svm = LiteSVM()
    theirs = svm.get_account(TOKEN)
    assert theirs is not None
    ((key, ours),) = build_program_account(TOKEN).items()
    assert key == TOKEN
    assert _bytes(ours) == bytes(theirs.data)
    assert ours.executable
    assert str(theirs.owner) == ours.owner
    assert ours.lamports == Rent.default().minimum_balance(36) == rent_exempt_minimum(36)
    # ...and the loader keeps the ELF of that program behind the 45-byte header.
    data = svm.get_account(programdata_address(TOKEN))
    assert data is not None
    assert bytes(data.data)[:4] == b"\x03\x00\x00\x00"
    assert bytes(data.data)[PROGRAMDATA_HEADER_LEN : PROGRAMDATA_HEADER_LEN + 4] == b"\x7fELF"


def _as_account(data: AccountData) -> Account:
    return Account(
        lamports=data.lamports,
        data=_bytes(data),
        owner=Pubkey.from_string(data.owner),
        executable=data.executable,
    )


def test_injected_elf_executes_in_litesvm() -> None:
    svm = LiteSVM()
    memo = svm.get_account(MEMO)
    assert memo is not None
    elf = bytes(memo.data)  # a BPFLoader2 program's account data is its ELF
    program = Pubkey.new_unique()
    size = PROGRAMDATA_HEADER_LEN + len(elf)
    states = build_program_injection(
        program, elf, deploy_slot=deploy_slot_for(0), lamports=rent_exempt_minimum(size)
    )
    states.update(build_program_account(program))
    for address, account in states.items():  # ProgramData first, then Program
        svm.set_account(address, _as_account(account))
    svm.warp_to_slot(1)
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 10**9)
    ix = Instruction(program, b"hello from a new id", [])
    msg = Message.new_with_blockhash([ix], payer.pubkey(), svm.latest_blockhash())
    result = svm.send_transaction(Transaction([payer], msg, svm.latest_blockhash()))
    logs = result.logs()  # type: ignore[union-attr]
    assert any("hello from a new id" in line for line in logs), logs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"elf": b"", "deploy_slot": 0, "lamports": 1},
        {"elf": "text", "deploy_slot": 0, "lamports": 1},
        {"elf": b"x", "deploy_slot": -1, "lamports": 1},
        {"elf": b"x", "deploy_slot": 0, "lamports": -1},
        {"elf": b"x", "deploy_slot": 0, "lamports": 1, "upgrade_authority": "bad"},
    ],
)
def test_injection_rejects_bad_input(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParams):
        build_program_injection(Pubkey.new_unique(), **kwargs)  # type: ignore[arg-type]


def test_deploy_slot_for() -> None:
    assert deploy_slot_for(0) == 0
    assert deploy_slot_for(4000) == 3999
    with pytest.raises(InvalidParams):
        deploy_slot_for(-1)
