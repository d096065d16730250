"""The synthetic chain is a pure, deterministic function of (config, slot)."""

from __future__ import annotations

import base64

import orjson
import pytest

from simtrio.server import chain
from simtrio.server.chain import ChainConfig
from simtrio.server.config import ServerConfig
from simtrio.wire.base58 import b58decode, is_address
from simtrio.wire.codec import decode_available_ranges, encode_available_ranges

from .helpers import TOKEN


def _dump_slot(cfg: ChainConfig, slot: int) -> bytes:
    parts = []
    for tx in chain.slot_transactions(cfg, slot):
        parts.append(orjson.dumps(chain.transaction_payload(cfg, tx)))
        for diff in chain.account_diffs(cfg, tx):
            parts.append(
                orjson.dumps([diff.account, diff.owner, diff.signature, diff.pre, diff.post])
            )
        parts.append(chain.serialize_transaction(cfg, tx))
    return b"|".join(parts)


def test_same_inputs_give_identical_bytes() -> None:
    first = b"".join(_dump_slot(ChainConfig(seed=5), s) for s in range(4000, 4050))
    chain.slot_transactions.cache_clear()
    second = b"".join(_dump_slot(ChainConfig(seed=5), s) for s in range(4000, 4050))
    assert first == second
    assert first != b"".join(_dump_slot(ChainConfig(seed=6), s) for s in range(4000, 4050))


def test_transactions_have_the_documented_shape() -> None:
    cfg = ChainConfig(seed=1, failure_rate=0.3)
    seen_failure = False
    for slot in range(100, 300):
        txs = chain.slot_transactions(cfg, slot)
        assert 1 <= len(txs) <= cfg.max_transactions_per_slot
        batches = [tx.batch_index for tx in txs]
        assert batches == sorted(batches)
        assert all(0 <= b < cfg.batches_per_slot for b in batches)
        for tx in txs:
            assert len(b58decode(tx.signature)) == 64
            assert tx.fee_payer in chain.fee_payers(cfg)
            assert tx.program_ids
            assert set(tx.program_ids) <= set(cfg.program_ids)
            assert tx.log_messages[0] == f"Program {tx.program_ids[0]} invoke [1]"
            seen_failure |= not tx.success
            for diff in chain.account_diffs(cfg, tx):
                assert diff.owner in tx.program_ids
                assert diff.account in chain.program_accounts(cfg, diff.owner)
                for state in (diff.pre, diff.post):
                    if state is not None:
                        assert list(state) == ["data", "executable", "lamports", "owner", "space"]
                        assert state["owner"] == diff.owner
                        assert len(base64.b64decode(state["data"]["data"])) == state["space"]
    assert seen_failure


def test_failed_transactions_change_no_accounts() -> None:
    cfg = ChainConfig(seed=2, failure_rate=1.0)
    txs = [tx for s in range(10) for tx in chain.slot_transactions(cfg, s)]
    assert all(not tx.success for tx in txs)
    assert all(chain.account_diffs(cfg, tx) == () for tx in txs)
    payload = chain.transaction_payload(cfg, txs[0])
    assert payload["meta"]["err"] == {
        "InstructionError": [len(txs[0].program_ids) - 1, {"Custom": 1}]
    }
    assert payload["meta"]["logMessages"][-1].endswith("failed: custom program error: 0x1")


def test_transaction_payload_is_get_transaction_shaped() -> None:
    cfg = ChainConfig(seed=3)
    tx = chain.slot_transactions(cfg, 4001)[0]
    payload = chain.transaction_payload(cfg, tx)
    assert list(payload) == ["slot", "transaction", "meta", "blockTime", "version"]
    assert payload["slot"] == 4001
    assert payload["blockTime"] == 1_767_607_200
    assert payload["transaction"]["signatures"] == [tx.signature]
    keys = payload["transaction"]["message"]["accountKeys"]
    assert keys[0] == tx.fee_payer
    assert all(is_address(k) for k in keys)
    assert payload["meta"]["fee"] == 5000


def test_serialized_transaction_carries_the_signature() -> None:
    cfg = ChainConfig(seed=4)
    tx = chain.slot_transactions(cfg, 7)[0]
    raw = chain.serialize_transaction(cfg, tx)
    assert raw[0] == 1
    assert raw[1:65] == b58decode(tx.signature)
    assert raw[65] == 1  # one required signature


def test_fast_base58_matches_the_wire_encoder() -> None:
    import random

    from simtrio.wire.base58 import b58encode

    rng = random.Random(5)
    samples = [b"", b"\x00", b"\x00\x00\x01", bytes(32), b"\xff" * 64]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(70))) for _ in range(500)]
    samples += [
        b"\x00" * rng.randrange(4) + bytes(rng.randrange(1, 256) for _ in range(32))
        for _ in range(50)
    ]
    for data in samples:
        assert chain.b58encode(data) == b58encode(data)


def test_block_time_and_utc() -> None:
    cfg = ChainConfig()
    assert chain.block_time(cfg, 4000) == 1_767_607_200
    assert chain.block_time(cfg, 4001) == 1_767_607_200
    assert chain.block_time(cfg, 4003) == 1_767_607_201
    assert chain.utc_of(cfg, 4000) == "2026-01-05T10:00:00Z"


def test_no_transactions_when_the_limit_is_zero() -> None:
    assert chain.slot_transactions(ChainConfig(max_transactions_per_slot=0), 9) == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"program_ids": ()},
        {"program_ids": ("not-an-address",)},
        {"program_ids": (TOKEN, TOKEN)},
        {"failure_rate": 1.5},
        {"batches_per_slot": 0},
    ],
)
def test_invalid_chain_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        ChainConfig(**kwargs)  # type: ignore[arg-type]


def test_available_ranges_cover_the_window() -> None:
    config = ServerConfig(window_start=50, window_end=299, bundle_size=100)
    ranges = config.available_ranges()
    assert [(r.bundle_start_slot, r.max_bundle_end_slot, r.snapshot_slot) for r in ranges] == [
        (0, 99, None),
        (100, 199, 99),
        (200, 299, 199),
    ]
    text = encode_available_ranges(ranges)
    assert text.startswith('[{"snapshotSlot":null,"snapshotSlotUtc":null,"bundleStartSlot":0,')
    assert decode_available_ranges(text) == ranges


def test_server_config_keeps_the_key_out_of_repr() -> None:
    config = ServerConfig(api_key="s3cret-key")
    assert "s3cret" not in repr(config)
    assert config.chain.seed == 0
    with pytest.raises(ValueError, match="window_end"):
        ServerConfig(window_start=10, window_end=5)
