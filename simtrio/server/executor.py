"""Real execution for the reference server: one LiteSVM per session.

A :class:`SessionChain` owns a session's ``solders.litesvm.LiteSVM`` (default programs,
sysvars, signature verification on) and everything the server reports about the user's
transactions: the ``getTransaction``-shaped record, the statuses, the accounts each one wrote.
It knows nothing about connections or logs of events; the session publishes what it returns.

The LiteSVM is created on first use (a session that never touches the chain costs nothing
extra) and is dropped when the session ends. Its clock follows the slot each call is made at.
Everything is a function of the calls made, in order: the faucet behind airdrops is derived
from the chain number, and LiteSVM's blockhash does not depend on the instance, so the same
requests give byte-identical results on every run.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Final, TypeAlias

import attrs
from solders.account import Account
from solders.compute_budget import ComputeBudget
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0, MessageV1
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from simtrio.server import chain
from simtrio.server.boundaries import BAD_BASE64, LITESVM_REJECTS, SOLDERS_REJECTS, map_exceptions
from simtrio.server.compute_budget import requested_budget
from simtrio.server.solana_json import error_json, transaction_json
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.rules import U64_MAX

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simtrio.wire.types import AccountData

UPGRADEABLE_LOADER: Final = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
SYSTEM_PROGRAM: Final = Pubkey.from_string("11111111111111111111111111111111")
MAX_RECORDS: Final = 4_096
"""Executed transactions a session remembers for ``getTransaction``/``getSignatureStatuses``."""
BLOCKHASH_VALID_SLOTS: Final = 150
"""What ``lastValidBlockHeight`` promises; the session's blockhash never expires in fact."""
MAX_LIVE_CHAINS: Final = 512
"""LiteSVMs a :class:`ChainBudget` allows by default (``ServerConfig.max_chain_sessions``)."""
_FEE_PER_SIGNATURE: Final = 5_000
_PROGRAM_TAG: Final = (2).to_bytes(4, "little")
_PROGRAMDATA_TAG: Final = (3).to_bytes(4, "little")
_EPOCH_SLOTS: Final = 432_000

AnyMessage: TypeAlias = Message | MessageV0 | MessageV1


class TransactionRejected(ValueError):
    """Bytes that are not a signed transaction (bincode ``VersionedTransaction``/``Transaction``)."""


class AccountRejected(ValueError):
    """An account override the chain cannot take; ``kind`` names what is wrong with it."""

    def __init__(self, address: str, kind: str, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.kind = kind
        self.reason = reason


class ChainUnavailable(Exception):
    """The server already keeps as many LiteSVMs as it may; this session cannot have one now."""


class ChainBudget:
    """How many sessions of one server hold a LiteSVM, against a limit."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_LIVE_CHAINS if limit is None else limit
        self.live = 0

    def acquire(self) -> None:
        if self.live >= self.limit:
            raise ChainUnavailable(
                f"{self.live} sessions of this server already hold a chain (the limit); "
                "close one and try again"
            )
        self.live += 1

    def release(self) -> None:
        self.live -= 1


def decode_transaction(raw: bytes) -> VersionedTransaction:
    """Deserialize a wire transaction (the legacy layout is a valid versioned one)."""
    with map_exceptions(
        SOLDERS_REJECTS, lambda exc: TransactionRejected(f"not a bincode transaction: {exc}")
    ):
        tx = VersionedTransaction.from_bytes(raw)
    if not tx.signatures:
        raise TransactionRejected("the transaction carries no signature")
    return tx


def decode_base64_transaction(text: str) -> VersionedTransaction:
    with map_exceptions(BAD_BASE64, lambda exc: TransactionRejected(f"invalid base64: {exc}")):
        raw = base64.b64decode(text, validate=True)
    return decode_transaction(raw)


@attrs.frozen
class WrittenAccount:
    """An account a transaction changed: state before and after (None: absent)."""

    address: str
    pre: Account | None
    post: Account | None

    @property
    def owners(self) -> tuple[str, ...]:
        """The owner before and the owner after, once each."""
        out: list[str] = []
        for account in (self.pre, self.post):
            if account is not None:
                owner = str(account.owner)
                if owner not in out:
                    out.append(owner)
        return tuple(out)


@attrs.frozen
class Executed:
    """One executed user transaction, as every report of it shows it."""

    signature: str
    slot: int
    err: JsonValue
    logs: tuple[str, ...]
    payload: JsonValue = attrs.field(repr=False)
    """``getTransaction``-shaped (encoding json)."""
    programs: tuple[str, ...]
    """Program accounts among its keys: who its transaction and logs notifications go to."""
    written: tuple[WrittenAccount, ...] = attrs.field(repr=False)

    @property
    def success(self) -> bool:
        return self.err is None

    def status(self) -> JsonValue:
        """Its entry in ``getSignatureStatuses``."""
        result: JsonValue = {"Ok": None} if self.err is None else {"Err": self.err}
        return {
            "slot": self.slot,
            "confirmations": None,
            "err": self.err,
            "status": result,
            "confirmationStatus": "finalized",
        }


@attrs.frozen
class Simulated:
    """What ``simulateTransaction`` reports; nothing was changed."""

    err: JsonValue
    logs: tuple[str, ...]
    units_consumed: int
    replacement_blockhash: Hash | None = None


def _faucet(seed: int, index: int) -> Keypair:
    digest = hashlib.blake2b(
        f"{seed}|faucet|{index}".encode(), digest_size=32, person=b"simtrio-faucet"
    ).digest()
    return Keypair.from_seed(digest)


class SessionChain:
    """A session's LiteSVM and the record of what the user executed on it."""

    def __init__(
        self,
        cfg: chain.ChainConfig,
        budget: ChainBudget | None = None,
        *,
        extra_compute_units: int = 0,
    ) -> None:
        self._cfg = cfg
        self._budget = budget or ChainBudget()
        self._extra_units = extra_compute_units
        """Added to every transaction's compute-unit limit (``extraComputeUnits``)."""
        self._svm: LiteSVM | None = None
        self._clock_slot = -1
        self._airdrops = 0
        self._records: OrderedDict[str, Executed] = OrderedDict()

    @property
    def started(self) -> bool:
        """Whether the LiteSVM exists yet (it is made on first use)."""
        return self._svm is not None

    def svm_at(self, slot: int) -> LiteSVM:
        """The LiteSVM, its clock at ``slot`` (created on first use).

        Raises:
            ChainUnavailable: this is the first use and the server's budget is spent.
        """
        svm = self._svm
        if svm is None:
            self._budget.acquire()
            svm = self._svm = LiteSVM().with_transaction_history(MAX_RECORDS)
            # LiteSVM's own airdrop account has a random address: empty it, so that no read
            # (getProgramAccounts of the system program) differs from run to run.
            svm.set_account(svm.airdrop_pubkey(), Account(0, b"", SYSTEM_PROGRAM, False, 0))
        if slot != self._clock_slot:
            svm.warp_to_slot(slot)
            clock = svm.get_clock()
            clock.unix_timestamp = chain.block_time(self._cfg, slot)
            clock.epoch = slot // _EPOCH_SLOTS
            clock.leader_schedule_epoch = clock.epoch + 1
            svm.set_clock(clock)
            self._clock_slot = slot
        return svm

    def release(self) -> None:
        """Drop the LiteSVM and the records (the session is over)."""
        if self._svm is not None:
            self._svm = None
            self._budget.release()
        self._records.clear()

    # -- accounts --------------------------------------------------------------------------

    def set_accounts(self, overrides: Mapping[str, AccountData], slot: int) -> None:
        """Apply overrides; all or nothing.

        Plain accounts go first and executable ones after, so a Program account always finds
        its ProgramData; a Program whose ProgramData was replaced is reloaded.

        Raises:
            AccountRejected: an override is malformed, or a program in it cannot be loaded
                (the chain is then as it was before the call).
        """
        svm = self.svm_at(slot)
        decoded: list[tuple[Pubkey, Account]] = [
            (_pubkey(address, "pubkey"), _account(address, data))
            for address, data in overrides.items()
        ]
        previous = [(key, svm.get_account(key)) for key, _ in decoded]
        ordered = [pair for pair in decoded if not pair[1].executable]
        ordered += [pair for pair in decoded if pair[1].executable]
        try:
            for key, account in ordered:
                _set(svm, key, account)
            self._reload_programs(
                svm, {key for key, account in decoded if _is_programdata(account)}
            )
        except AccountRejected:
            for key, old in previous:
                svm.set_account(key, old or Account(0, b"", SYSTEM_PROGRAM, False, 0))
            raise

    def _reload_programs(self, svm: LiteSVM, programdata: set[Pubkey]) -> None:
        """Re-set the Program accounts that point at replaced ProgramData (an upgrade)."""
        if not programdata:
            return
        for key, account in svm.get_program_accounts(UPGRADEABLE_LOADER):
            data = account.data
            if (
                account.executable
                and len(data) >= 36
                and data[:4] == _PROGRAM_TAG
                and Pubkey(data[4:36]) in programdata
            ):
                _set(svm, key, account)

    def get_account(self, address: Pubkey, slot: int) -> Account | None:
        return _live(self.svm_at(slot).get_account(address))

    def program_accounts(self, program: Pubkey, slot: int) -> list[tuple[Pubkey, Account]]:
        found = self.svm_at(slot).get_program_accounts(program)
        return sorted((pair for pair in found if pair[1].lamports > 0), key=lambda p: bytes(p[0]))

    # -- transactions ----------------------------------------------------------------------

    def execute(self, tx: VersionedTransaction, slot: int) -> Executed:
        """Run ``tx`` at ``slot``; a failure is a result like a success."""
        svm = self.svm_at(slot)
        message = tx.message
        keys = list(message.account_keys)
        names = [str(key) for key in keys]
        writable = _writable(message, len(keys))
        pre_balances = [svm.get_balance(key) or 0 for key in keys]
        before = [(i, _live(svm.get_account(keys[i]))) for i in writable]
        programs = _programs(svm, message, keys, names)
        self._budget_for(svm, message)
        result = svm.send_transaction(tx)
        # Only writable accounts can change: the other balances stay as they were.
        post_balances = list(pre_balances)
        written: list[WrittenAccount] = []
        for i, pre in before:
            post = _live(svm.get_account(keys[i]))
            if pre != post:
                post_balances[i] = 0 if post is None else post.lamports
                written.append(WrittenAccount(names[i], pre, post))
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            err = error_json(result.err())
        else:
            meta = result
            err = None
        signature = str(tx.signatures[0])
        logs = tuple(meta.logs())
        payload = transaction_json(
            self._cfg, tx, slot, err, meta, logs, (pre_balances, post_balances), names
        )
        done = Executed(
            signature=signature,
            slot=slot,
            err=err,
            logs=logs,
            payload=payload,
            programs=programs,
            written=tuple(written),
        )
        if signature not in self._records:
            # A duplicate is reported (AlreadyProcessed) but keeps the first one's record.
            self._records[signature] = done
            while len(self._records) > MAX_RECORDS:
                self._records.popitem(last=False)
        return done

    def simulate(
        self,
        tx: VersionedTransaction,
        slot: int,
        *,
        verify_signatures: bool = False,
        replace_blockhash: bool = False,
    ) -> Simulated:
        """Run ``tx`` without keeping anything (Solana's defaults: signatures not checked).

        With ``replace_blockhash`` the message gets the latest blockhash first (its signatures
        then no longer match, so they must not be verified).
        """
        svm = self.svm_at(slot)
        replacement: Hash | None = None
        if replace_blockhash:
            replacement = svm.latest_blockhash()
            tx = VersionedTransaction.populate(
                _with_blockhash(tx.message, replacement), tx.signatures
            )
        self._budget_for(svm, tx.message)
        svm.with_sigverify(verify_signatures)
        try:
            result = svm.simulate_transaction(tx)
        finally:
            svm.with_sigverify(True)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            err = error_json(result.err())
        else:
            meta = result.meta()
            err = None
        return Simulated(err, tuple(meta.logs()), meta.compute_units_consumed(), replacement)

    def _budget_for(self, svm: LiteSVM, message: AnyMessage) -> None:
        """Give the next transaction its own limit plus the extra units, if any were asked for.

        A budget set on a LiteSVM replaces the one the transaction asks for, so it is set anew
        before each transaction, from what that transaction asks for.
        """
        if self._extra_units <= 0:
            return
        units, heap = requested_budget(message)
        budget = ComputeBudget(True)
        budget.compute_unit_limit = units + self._extra_units
        if heap is not None:
            budget.heap_size = heap
        svm.with_compute_budget(budget)

    def airdrop(self, address: Pubkey, lamports: int, slot: int) -> Executed:
        """Credit ``lamports`` with a real system transfer from a fresh, derived faucet."""
        svm = self.svm_at(slot)
        self._airdrops += 1
        faucet = _faucet(self._cfg.seed, self._airdrops)
        svm.set_account(
            faucet.pubkey(),
            Account(lamports + _FEE_PER_SIGNATURE, b"", SYSTEM_PROGRAM, False, 0),
        )
        ix = transfer(
            TransferParams(from_pubkey=faucet.pubkey(), to_pubkey=address, lamports=lamports)
        )
        message = Message.new_with_blockhash([ix], faucet.pubkey(), svm.latest_blockhash())
        tx = VersionedTransaction.from_legacy(
            Transaction([faucet], message, message.recent_blockhash)
        )
        return self.execute(tx, slot)

    def latest_blockhash(self, slot: int) -> Hash:
        return self.svm_at(slot).latest_blockhash()

    def minimum_balance(self, size: int, slot: int) -> int:
        return self.svm_at(slot).minimum_balance_for_rent_exemption(size)

    def record(self, signature: str) -> Executed | None:
        return self._records.get(signature)


def _rejected(address: str, kind: str, reason: str) -> map_exceptions:
    """The solders boundary of an account override: what it raises is ``AccountRejected``."""
    return map_exceptions(SOLDERS_REJECTS, lambda _exc: AccountRejected(address, kind, reason))


def _pubkey(text: str, kind: str) -> Pubkey:
    with _rejected(text, kind, "not a 32-byte base58 address"):
        return Pubkey.from_string(text)


def _account(address: str, data: AccountData) -> Account:
    if data.data.encoding != "base64":
        raise AccountRejected(address, "encoding", f"unsupported encoding {data.data.encoding!r}")
    with map_exceptions(
        BAD_BASE64, lambda exc: AccountRejected(address, "encoding", f"invalid base64: {exc}")
    ):
        raw = base64.b64decode(data.data.data, validate=True)
    if not 0 <= data.lamports <= U64_MAX:
        raise AccountRejected(address, "lamports", "lamports must be an unsigned 64-bit integer")
    with _rejected(address, "owner", "owner is not a 32-byte base58 address"):
        owner = Pubkey.from_string(data.owner)
    return Account(data.lamports, raw, owner, data.executable, 0)


def _with_blockhash(message: AnyMessage, blockhash: Hash) -> Message | MessageV0:
    header = message.header
    if isinstance(message, Message):
        return Message.new_with_compiled_instructions(
            header.num_required_signatures,
            header.num_readonly_signed_accounts,
            header.num_readonly_unsigned_accounts,
            message.account_keys,
            blockhash,
            message.instructions,
        )
    if isinstance(message, MessageV0):
        return MessageV0(
            header,
            message.account_keys,
            blockhash,
            message.instructions,
            message.address_table_lookups,
        )
    raise TransactionRejected("replaceRecentBlockhash is not supported for this message version")


def _live(account: Account | None) -> Account | None:
    """None for an account that does not exist (absent, or drained to zero lamports)."""
    return account if account is not None and account.lamports > 0 else None


def _is_programdata(account: Account) -> bool:
    return account.owner == UPGRADEABLE_LOADER and account.data[:4] == _PROGRAMDATA_TAG


def _set(svm: LiteSVM, key: Pubkey, account: Account) -> None:
    with map_exceptions(
        LITESVM_REJECTS,
        lambda exc: AccountRejected(str(key), "program", f"cannot be loaded: {exc}"),
    ):
        svm.set_account(key, account)


def _writable(message: AnyMessage, count: int) -> list[int]:
    header = message.header
    signed = header.num_required_signatures
    writable_signed = signed - header.num_readonly_signed_accounts
    writable_unsigned = count - header.num_readonly_unsigned_accounts
    return [i for i in range(count) if i < writable_signed or signed <= i < writable_unsigned]


def _programs(
    svm: LiteSVM, message: AnyMessage, keys: list[Pubkey], names: list[str]
) -> tuple[str, ...]:
    """Instruction program ids, then any other executable account among the keys."""
    out: list[str] = []
    for ix in message.instructions:
        if ix.program_id_index < len(names):
            name = names[ix.program_id_index]
            if name not in out:
                out.append(name)
    # An unsanitized header may claim more read-only keys than there are.
    readonly = message.header.num_readonly_unsigned_accounts
    for index in range(max(len(keys) - readonly, 0), len(keys)):
        name = names[index]
        if name not in out:
            account = svm.get_account(keys[index])
            if account is not None and account.executable:
                out.append(name)
    return tuple(out)
