"""The session chain on its own: no server, no sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from solders.pubkey import Pubkey

from simtrio.server import chain, executor
from simtrio.server.chain import ChainConfig
from simtrio.server.executor import AccountRejected, SessionChain, decode_transaction
from simtrio.wire.types import AccountData, EncodedBinary

from .chain_helpers import SOL, SYSTEM, injection, keypair, transfer_tx


def wallet(lamports: int) -> AccountData:
    return AccountData(EncodedBinary(""), False, lamports, SYSTEM, 0)


def test_the_chain_is_made_on_first_use_and_dropped_on_release() -> None:
    session_chain = SessionChain(ChainConfig())
    assert not session_chain.started
    assert session_chain.get_account(keypair(1).pubkey(), 4000) is None
    assert session_chain.started
    session_chain.release()
    assert not session_chain.started


def test_the_clock_follows_the_slot() -> None:
    cfg = ChainConfig()
    session_chain = SessionChain(cfg)
    for slot in (4000, 4001, 900_000, 4002):
        clock = session_chain.svm_at(slot).get_clock()
        assert clock.slot == slot
        assert clock.unix_timestamp == chain.block_time(cfg, slot)
        assert clock.epoch == slot // 432_000


def test_overrides_are_all_or_nothing() -> None:
    session_chain = SessionChain(ChainConfig())
    good = str(keypair(2).pubkey())
    session_chain.set_accounts({good: wallet(SOL)}, 4000)
    program = keypair(7).pubkey()
    broken = {
        address: AccountData(
            EncodedBinary(value["data"]["data"]),
            value["executable"],
            value["lamports"],
            value["owner"],
            value["space"],
        )
        for address, value in injection(program, b"not an elf", 3999).items()
    }
    other = str(keypair(3).pubkey())
    with pytest.raises(AccountRejected) as caught:
        session_chain.set_accounts({good: wallet(5), other: wallet(7), **broken}, 4000)
    assert caught.value.address == str(program)
    assert caught.value.kind == "program"
    kept = session_chain.get_account(Pubkey.from_string(good), 4000)
    assert kept is not None
    assert kept.lamports == SOL
    for address in (other, *broken):
        assert session_chain.get_account(Pubkey.from_string(address), 4000) is None


@pytest.mark.parametrize(
    ("address", "account", "kind"),
    [
        ("nope", wallet(1), "pubkey"),
        (SYSTEM, AccountData(EncodedBinary(""), False, 1, "owner?", 0), "owner"),
        (SYSTEM, AccountData(EncodedBinary("AA", "base58"), False, 1, SYSTEM, 0), "encoding"),
        (SYSTEM, AccountData(EncodedBinary("!"), False, 1, SYSTEM, 0), "encoding"),
        (SYSTEM, AccountData(EncodedBinary(""), False, 2**64, SYSTEM, 0), "lamports"),
    ],
)
def test_malformed_overrides_name_what_is_wrong(
    address: str, account: AccountData, kind: str
) -> None:
    with pytest.raises(AccountRejected) as caught:
        SessionChain(ChainConfig()).set_accounts({address: account}, 1)
    assert (caught.value.address, caught.value.kind) == (address, kind)


def test_records_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "MAX_RECORDS", 3)
    session_chain = SessionChain(ChainConfig())
    payer = keypair(4)
    session_chain.set_accounts({str(payer.pubkey()): wallet(SOL)}, 4000)
    signatures = []
    for n in range(5):
        tx = decode_transaction(bytes(transfer_tx(payer, keypair(5).pubkey(), 1_000_000 + n)))
        signatures.append(session_chain.execute(tx, 4000).signature)
    assert [session_chain.record(s) is not None for s in signatures] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_airdrops_are_the_same_on_every_run() -> None:
    address = keypair(6).pubkey()
    first = SessionChain(ChainConfig(seed=1)).airdrop(address, SOL, 4000)
    again = SessionChain(ChainConfig(seed=1)).airdrop(address, SOL, 4000)
    other = SessionChain(ChainConfig(seed=2)).airdrop(address, SOL, 4000)
    assert first == again
    assert first.signature != other.signature
    assert first.success


@pytest.mark.parametrize("raw", [b"", b"\x01\x02", bytes(80)])
def test_undecodable_bytes_are_rejected(raw: bytes) -> None:
    with pytest.raises(executor.TransactionRejected):
        decode_transaction(raw)


def test_a_header_claiming_too_many_read_only_keys_is_a_failed_result() -> None:
    session_chain = SessionChain(ChainConfig())
    raw = bytearray(bytes(transfer_tx(keypair(8), keypair(9).pubkey(), 1)))
    raw[1 + 64 + 2] = 200  # numReadonlyUnsignedAccounts, far above the 3 keys
    done = session_chain.execute(decode_transaction(bytes(raw)), 4000)
    assert not done.success
    assert done.payload["meta"]["fee"] == 0  # type: ignore[index, call-overload]


def test_no_read_shows_litesvm_s_random_airdrop_account() -> None:
    system = Pubkey.from_string(SYSTEM)
    for _ in range(2):
        assert SessionChain(ChainConfig()).program_accounts(system, 4000) == []


_SCRIPT = """
import hashlib, orjson
from solders.pubkey import Pubkey
from simtrio.server.chain import ChainConfig
from simtrio.server.executor import SessionChain, decode_transaction
from simtrio.server.solana_json import account_json
from tests.server.chain_helpers import MEMO, SOL, SYSTEM, invoke_tx, keypair, transfer_tx

chain = SessionChain(ChainConfig(seed=3))
payer = keypair(1)
out = [chain.airdrop(payer.pubkey(), 5 * SOL, 4000)]
for n, tx in enumerate([
    transfer_tx(payer, keypair(2).pubkey(), SOL),
    transfer_tx(payer, keypair(3).pubkey(), 50 * SOL),
    invoke_tx(payer, Pubkey.from_string(MEMO), b"memo"),
]):
    out.append(chain.execute(decode_transaction(bytes(tx)), 4001 + n))
digest = hashlib.sha256()
for done in out:
    digest.update(orjson.dumps(done.payload))
    for written in done.written:
        digest.update(orjson.dumps([written.address, account_json(written.pre), account_json(written.post)]))
for key, account in chain.program_accounts(Pubkey.from_string(SYSTEM), 4005):
    digest.update(bytes(key) + bytes(account.data) + account.lamports.to_bytes(8, "little"))
print(digest.hexdigest())
"""


def test_results_are_the_same_in_every_process() -> None:
    root = Path(__file__).resolve().parents[2]
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1
    assert len(digests.pop()) == 64
