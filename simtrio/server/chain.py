"""The deterministic synthetic chain the reference server replays (protocol §12.3).

Everything here is a pure function of ``(ChainConfig, slot)``: no clock, no randomness, no
state. Values are drawn from BLAKE2b digests of the seed, the slot and a label, so the same
inputs give byte-identical transactions, diffs and notifications on every run and every
platform, whatever the timing of the connections that carry them.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
import datetime
import functools
import hashlib
from typing import Final

import attrs
from solders.hash import Hash
from solders.instruction import CompiledInstruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from simtrio.wire.base58 import is_address
from simtrio.wire.jsontext import JsonValue

DEFAULT_PROGRAM_IDS: Final[tuple[str, ...]] = (
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
    "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
    "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
)
"""Real program ids, so payloads look like the ones a live server sends."""

DEFAULT_BLOCK_TIME_ORIGIN: Final = 1_767_605_600
"""Unix time of slot 0: slot 4000 then falls on 2026-01-05T10:00:00Z, as in the spec examples."""

_FEE: Final = 5_000
_PAYER_BALANCE: Final = 1_000_000_000
_PROGRAM_BALANCE: Final = 1_141_440
_CU_LIMIT: Final = 200_000
_DIGEST_PERSON: Final = b"simtrio-chain"


def _is_rate(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


def _is_program_list(
    _inst: object, attribute: attrs.Attribute[tuple[str, ...]], value: object
) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty tuple of addresses")
    items: tuple[object, ...] = value  # pyright: ignore[reportUnknownVariableType]
    for item in items:
        if not is_address(item):
            raise ValueError(f"{attribute.name}: not a base58 address: {item!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{attribute.name} must not repeat an address")


@attrs.frozen
class ChainConfig:
    """The inputs of the synthetic chain; hashable, so per-slot results can be cached."""

    seed: int = 0
    program_ids: tuple[str, ...] = attrs.field(
        default=DEFAULT_PROGRAM_IDS, validator=_is_program_list
    )
    max_transactions_per_slot: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    batches_per_slot: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    accounts_per_program: int = attrs.field(default=8, validator=attrs.validators.ge(0))
    failure_rate: float = attrs.field(default=0.1, validator=_is_rate)
    mismatch_rate: float = attrs.field(default=0.0, validator=_is_rate)
    block_time_origin: int = DEFAULT_BLOCK_TIME_ORIGIN
    fee_payer_count: int = attrs.field(default=16, validator=attrs.validators.ge(1))


@attrs.frozen
class SyntheticTransaction:
    """One historical transaction of a slot."""

    slot: int
    index: int
    batch_index: int
    signature: str
    fee_payer: str
    program_ids: tuple[str, ...]
    accounts: tuple[str, ...]
    """One touched account per involved program, parallel to ``program_ids``."""
    success: bool
    mismatch: bool
    """Whether replaying it deviates from history (counted in the summary)."""
    compute_units: int
    log_messages: tuple[str, ...]
    signature_bytes: bytes = attrs.field(repr=False)
    random_bytes: bytes = attrs.field(repr=False, eq=False)
    """Derived bytes the transaction's other draws are sliced from."""


@attrs.frozen
class AccountDiff:
    """An account change made by one transaction; ``pre``/``post`` in the ``AccountData`` shape."""

    slot: int
    account: str
    owner: str
    signature: str
    pre: JsonValue
    post: JsonValue


_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_PAIRS: Final = tuple(a + b for a in _B58_ALPHABET for b in _B58_ALPHABET)
_B58_CHUNK: Final = 58**10


def b58encode(data: bytes) -> str:
    """Base58 of bytes of any length (instruction data), in few big-integer steps.

    Addresses, signatures and hashes go through solders; this is for the rest. The value is
    split into chunks of ten digits, and each chunk into digit pairs from a table.
    """
    stripped = data.lstrip(b"\x00")
    value = int.from_bytes(stripped, "big")
    parts: list[str] = []
    pairs = _B58_PAIRS
    while value:
        value, chunk = divmod(value, _B58_CHUNK)
        for _ in range(5):
            chunk, pair = divmod(chunk, 3364)
            parts.append(pairs[pair])
    return "1" * (len(data) - len(stripped)) + "".join(reversed(parts)).lstrip("1")


def _digest(cfg: ChainConfig, *parts: object, size: int = 64) -> bytes:
    message = "|".join([str(cfg.seed), *(str(p) for p in parts)]).encode("utf-8")
    return hashlib.blake2b(message, digest_size=size, person=_DIGEST_PERSON).digest()


def _random_bytes(cfg: ChainConfig, size: int, *parts: object) -> bytes:
    """``size`` derived bytes: one digest per 64 bytes, so a draw costs one hash, not many."""
    if size <= 64:
        return _digest(cfg, *parts)
    return b"".join(_digest(cfg, *parts, block) for block in range((size + 63) // 64))[:size]


def _draw(cfg: ChainConfig, *parts: object) -> int:
    """A 64-bit unsigned draw."""
    return int.from_bytes(_digest(cfg, *parts, size=8), "big")


def _u(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "big")


def _below(data: bytes, offset: int, rate: float) -> bool:
    """True with probability ``rate``, from eight bytes at ``offset``."""
    return rate > 0.0 and _u(data, offset, 8) / 2**64 < rate


@functools.lru_cache(maxsize=64)
def fee_payers(cfg: ChainConfig) -> tuple[str, ...]:
    """The fixed pool fee payers are drawn from (``signerFilter`` matches against these)."""
    return tuple(str(Pubkey(_digest(cfg, "payer", k, size=32))) for k in range(cfg.fee_payer_count))


@functools.lru_cache(maxsize=256)
def program_accounts(cfg: ChainConfig, program_id: str) -> tuple[str, ...]:
    """The accounts owned by ``program_id``: the ones its account diffs are about."""
    return tuple(
        str(Pubkey(_digest(cfg, "account", program_id, k, size=32)))
        for k in range(cfg.accounts_per_program)
    )


def block_time(cfg: ChainConfig, slot: int) -> int:
    """Origin + 0.4 s per slot, in whole seconds."""
    return cfg.block_time_origin + (slot * 2) // 5


def utc_of(cfg: ChainConfig, slot: int) -> str:
    """The block time of ``slot`` as ``YYYY-MM-DDTHH:MM:SSZ``."""
    moment = datetime.datetime.fromtimestamp(block_time(cfg, slot), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1024)
def _blockhash(cfg: ChainConfig, slot: int) -> str:
    return str(Hash(_digest(cfg, "blockhash", slot, size=32)))


# Layout of a transaction's random bytes: fixed fields, then four bytes per configured
# program (involved?, touched account (2), diff shape), then 12 instruction-data bytes per
# configured program.
_R_COUNT_FIELDS = 28
_R_PRIMARY, _R_PAYER, _R_FAILS, _R_MISMATCH, _R_UNITS = 0, 4, 8, 16, 24
_IX_DATA_LEN = 12


@functools.lru_cache(maxsize=4096)
def slot_transactions(cfg: ChainConfig, slot: int) -> tuple[SyntheticTransaction, ...]:
    """The historical transactions of ``slot`` in execution order (before any signer filter).

    A slot holds between 1 and ``max_transactions_per_slot`` transactions (none when that is
    0), split into ``batches_per_slot`` contiguous batches.
    """
    limit = cfg.max_transactions_per_slot
    if limit == 0:
        return ()
    count = 1 + _draw(cfg, "count", slot) % limit
    payers = fee_payers(cfg)
    programs = cfg.program_ids
    per_program = _R_COUNT_FIELDS + 4 * len(programs)
    size = per_program + _IX_DATA_LEN * len(programs)
    out: list[SyntheticTransaction] = []
    for index in range(count):
        sig = _digest(cfg, "signature", slot, index)
        rnd = _random_bytes(cfg, size, "tx", slot, index)
        primary = _u(rnd, _R_PRIMARY, 4) % len(programs)
        involved: list[str] = []
        accounts: list[str] = []
        for k, program in enumerate(programs):
            at = _R_COUNT_FIELDS + 4 * k
            if k == primary or rnd[at] % 3 == 0:
                involved.append(program)
                pool = program_accounts(cfg, program)
                if pool:
                    accounts.append(pool[_u(rnd, at + 1, 2) % len(pool)])
        success = not _below(rnd, _R_FAILS, cfg.failure_rate)
        units = 1_000 + _u(rnd, _R_UNITS, 4) % 50_000
        out.append(
            SyntheticTransaction(
                slot=slot,
                index=index,
                batch_index=index * cfg.batches_per_slot // count,
                signature=str(Signature(sig)),
                fee_payer=payers[_u(rnd, _R_PAYER, 4) % len(payers)],
                program_ids=tuple(involved),
                accounts=tuple(accounts),
                success=success,
                mismatch=_below(rnd, _R_MISMATCH, cfg.mismatch_rate),
                compute_units=units,
                log_messages=_logs(tuple(involved), success, units),
                signature_bytes=sig,
                random_bytes=rnd,
            )
        )
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _slot_batches(cfg: ChainConfig, slot: int) -> tuple[tuple[SyntheticTransaction, ...], ...]:
    batches: list[list[SyntheticTransaction]] = [[] for _ in range(cfg.batches_per_slot)]
    for tx in slot_transactions(cfg, slot):
        batches[tx.batch_index].append(tx)
    return tuple(tuple(batch) for batch in batches)


def batch_transactions(
    cfg: ChainConfig, slot: int, batch_index: int
) -> tuple[SyntheticTransaction, ...]:
    """The transactions of one batch of ``slot``."""
    batches = _slot_batches(cfg, slot)
    return batches[batch_index] if 0 <= batch_index < len(batches) else ()


def _logs(programs: tuple[str, ...], success: bool, units: int) -> tuple[str, ...]:
    lines: list[str] = []
    share = units // len(programs)
    for k, program in enumerate(programs):
        lines.append(f"Program {program} invoke [1]")
        lines.append(f"Program {program} consumed {share} of {_CU_LIMIT} compute units")
        if not success and k == len(programs) - 1:
            lines.append(f"Program {program} failed: custom program error: 0x1")
            break
        lines.append(f"Program {program} success")
    return tuple(lines)


@functools.lru_cache(maxsize=65536)
def _account_space(cfg: ChainConfig, account: str) -> int:
    return 8 * (1 + _draw(cfg, "space", account) % 4)


def _account_state(cfg: ChainConfig, account: str, owner: str, *parts: object) -> JsonValue:
    space = _account_space(cfg, account)
    data = _digest(cfg, "data", account, *parts)[:space]
    return {
        "data": {"data": base64.b64encode(data).decode("ascii"), "encoding": "base64"},
        "executable": False,
        "lamports": (128 + space) * 6_960,
        "owner": owner,
        "space": space,
    }


def _program_slot(cfg: ChainConfig, program: str) -> int:
    return cfg.program_ids.index(program)


def account_diffs(cfg: ChainConfig, tx: SyntheticTransaction) -> tuple[AccountDiff, ...]:
    """The account diffs of a transaction; a failed transaction changes nothing.

    Now and then an account is created (``pre`` null) or closed (``post`` null), so consumers
    see both shapes.
    """
    if not tx.success:
        return ()
    out: list[AccountDiff] = []
    owners = [p for p in tx.program_ids if program_accounts(cfg, p)]
    for account, owner in zip(tx.accounts, owners, strict=True):
        shape = tx.random_bytes[_R_COUNT_FIELDS + 4 * _program_slot(cfg, owner) + 3] % 32
        pre = None if shape == 0 else _account_state(cfg, account, owner, tx.slot, tx.index, "pre")
        post = (
            None if shape == 1 else _account_state(cfg, account, owner, tx.slot, tx.index, "post")
        )
        out.append(AccountDiff(tx.slot, account, owner, tx.signature, pre, post))
    return tuple(out)


def _account_keys(tx: SyntheticTransaction) -> list[str]:
    keys = [tx.fee_payer]
    for account in tx.accounts:
        if account not in keys:
            keys.append(account)
    for program in tx.program_ids:
        if program not in keys:
            keys.append(program)
    return keys


def _instruction_data(cfg: ChainConfig, tx: SyntheticTransaction, k: int) -> bytes:
    at = _R_COUNT_FIELDS + 4 * len(cfg.program_ids) + _IX_DATA_LEN * k
    return tx.random_bytes[at : at + _IX_DATA_LEN]


def transaction_error(cfg: ChainConfig, tx: SyntheticTransaction) -> JsonValue:
    """The error of a failed transaction: its last instruction fails with custom error 1."""
    del cfg
    return {"InstructionError": [len(tx.program_ids) - 1, {"Custom": 1}]}


def transaction_payload(cfg: ChainConfig, tx: SyntheticTransaction) -> JsonValue:
    """A ``getTransaction``-shaped object for a transaction notification (protocol §9.4)."""
    keys = _account_keys(tx)
    pools = {p: program_accounts(cfg, p) for p in tx.program_ids}
    owned = iter(tx.accounts)
    instructions: list[JsonValue] = []
    for k, program in enumerate(tx.program_ids):
        accounts = [keys.index(next(owned))] if pools[program] else []
        instructions.append(
            {
                "programIdIndex": keys.index(program),
                "accounts": accounts,
                "data": b58encode(_instruction_data(cfg, tx, k)),
            }
        )
    pre_balances = [_PAYER_BALANCE] + [
        _PROGRAM_BALANCE if key in tx.program_ids else (128 + _account_space(cfg, key)) * 6_960
        for key in keys[1:]
    ]
    post_balances = [pre_balances[0] - _FEE, *pre_balances[1:]]
    err = None if tx.success else transaction_error(cfg, tx)
    return {
        "slot": tx.slot,
        "transaction": {
            "signatures": [tx.signature],
            "message": {
                "accountKeys": keys,
                "recentBlockhash": _blockhash(cfg, tx.slot),
                "instructions": instructions,
            },
        },
        "meta": {
            "err": err,
            "fee": _FEE,
            "preBalances": pre_balances,
            "postBalances": post_balances,
            "logMessages": list(tx.log_messages),
            "computeUnitsConsumed": tx.compute_units,
        },
        "blockTime": block_time(cfg, tx.slot),
        "version": "legacy",
    }


def serialize_transaction(cfg: ChainConfig, tx: SyntheticTransaction) -> bytes:
    """The transaction in the legacy wire layout (what discovery events carry, base64-encoded)."""
    keys = _account_keys(tx)
    readonly_programs = sum(1 for key in keys if key in tx.program_ids)
    pools = {p: program_accounts(cfg, p) for p in tx.program_ids}
    owned = iter(tx.accounts)
    instructions: list[CompiledInstruction] = []
    for k, program in enumerate(tx.program_ids):
        indices = [keys.index(next(owned))] if pools[program] else []
        data = _instruction_data(cfg, tx, k)
        instructions.append(CompiledInstruction(keys.index(program), data, bytes(indices)))
    message = Message.new_with_compiled_instructions(
        1,
        0,
        readonly_programs,
        [Pubkey.from_string(key) for key in keys],
        Hash.from_string(_blockhash(cfg, tx.slot)),
        instructions,
    )
    return bytes(Transaction.populate(message, [Signature(tx.signature_bytes)]))
