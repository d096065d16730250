"""Per-session JSON-RPC over HTTP, without the HTTP: request bodies in, typed results out.

Everything here is pure. :func:`encode_request` writes a request body, :func:`decode_response`
reads a reply body into the raw ``result`` (or raises the server's error as
:class:`~simtrio.errors.RpcError`), and the ``*_result`` readers turn a raw result into the
solders types and plain values the public API returns. The conversions the other way (solders
values and loose user input into wire text: addresses, transactions, account states) live here
too, so that both directions meet at one boundary.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import attrs
import orjson
from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_status import TransactionStatus

from simtrio.errors import InvalidParams, ProtocolError, RpcError
from simtrio.wire.jsontext import JsonObject, JsonValue, as_list, as_object, is_int, loads_object
from simtrio.wire.types import AccountData, EncodedBinary

AddressInput: TypeAlias = Pubkey | str
"""An account address as the public API takes it."""
TransactionInput: TypeAlias = VersionedTransaction | Transaction | bytes | str
"""A transaction: a solders value, its bincode bytes, or those bytes as base64 text."""
AccountInput: TypeAlias = Account | AccountData
"""An account state: a solders ``Account`` or the wire's ``AccountData``."""
AccountMods: TypeAlias = Mapping[Pubkey, AccountInput] | Mapping[str, AccountInput]
"""Account overrides keyed by address."""

READ_METHODS: Final = frozenset(
    {
        "getSlot",
        "getLatestBlockhash",
        "getBalance",
        "getAccountInfo",
        "getMultipleAccounts",
        "getProgramAccounts",
        "getMinimumBalanceForRentExemption",
        "getSignatureStatuses",
        "getTransaction",
        "simulateTransaction",
    }
)
"""Methods that change nothing on the server, so a failed attempt may be sent again."""

_SERIALIZED: Final = (VersionedTransaction, Transaction, bytes, bytearray)


# --------------------------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------------------------


def encode_request(request_id: int, method: str, params: JsonValue = None) -> bytes:
    """The body of one JSON-RPC 2.0 request; ``params`` None leaves the member out.

    Raises:
        InvalidParams: a parameter cannot be written as JSON.
    """
    request: JsonObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        request["params"] = params
    try:
        return orjson.dumps(request)
    except TypeError as exc:  # orjson.JSONEncodeError
        raise InvalidParams(f"{method} parameters cannot be encoded as JSON: {exc}") from None


def decode_response(body: bytes | str) -> JsonValue:
    """The ``result`` of one JSON-RPC reply body.

    Raises:
        RpcError: the reply is an ``error`` object (its code, message and data are kept).
        ProtocolError: the body is not a JSON-RPC reply.
    """
    obj = loads_object(body, "rpc reply")
    error = obj.get("error")
    if error is not None:
        err = as_object(error)
        if err is None:
            raise ProtocolError("rpc error is not a JSON object", data=body)
        code = err.get("code")
        message = err.get("message")
        if not isinstance(code, int) or isinstance(code, bool):
            raise ProtocolError("rpc error without an integer code", data=body)
        raise RpcError(code, message if isinstance(message, str) else "", err.get("data"))
    if "result" not in obj:
        raise ProtocolError("rpc reply has neither result nor error", data=body)
    return obj["result"]


# --------------------------------------------------------------------------------------------
# Public values -> wire
# --------------------------------------------------------------------------------------------


def address_text(value: object, what: str = "address") -> str:
    """The base58 text of an address given as ``Pubkey`` or ``str``.

    Raises:
        InvalidParams: not a ``Pubkey``, or text that is not a 32-byte base58 address.
    """
    return _base58_text(value, Pubkey, what, f"{what} is not a 32-byte base58 address", 60)


def signature_text(value: object) -> str:
    """The base58 text of a signature given as ``Signature`` or ``str``.

    Raises:
        InvalidParams: not a ``Signature``, or text that is not a 64-byte base58 signature.
    """
    return _base58_text(value, Signature, "a signature", "not a base58 signature", 100)


def _base58_text(
    value: object, kind: type[Pubkey | Signature], what: str, invalid: str, shown: int
) -> str:
    """``value`` as checked base58 text: a ``kind`` instance, or text that parses as one.

    ``invalid`` starts the error for unparsable text, of which the first ``shown`` characters
    are quoted.
    """
    if isinstance(value, kind):
        return str(value)
    if isinstance(value, str):
        try:
            kind.from_string(value)
        except ValueError:
            raise InvalidParams(f"{invalid}: {value[:shown]!r}") from None
        return value
    raise InvalidParams(f"{what} must be a {kind.__name__} or str, not {type(value).__name__}")


def transaction_base64(value: object, what: str = "transaction") -> str:
    """The wire text of a transaction (§3.2): bincode, then standard base64 with padding.

    A ``str`` is taken as already encoded and passed on unchanged (the server reports text
    that does not decode as ``InvalidTransactionEncoding``).

    Raises:
        InvalidParams: a value of any other kind.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, _SERIALIZED):
        raw = bytes(value)
    else:
        raise InvalidParams(
            f"{what} must be a VersionedTransaction, Transaction, bytes or base64 str, "
            f"not {type(value).__name__}"
        )
    return base64.b64encode(raw).decode("ascii")


def account_data(value: object, what: str = "account") -> AccountData:
    """The §3.2 ``AccountData`` of a solders ``Account`` (an ``AccountData`` is kept as is).

    Raises:
        InvalidParams: a value of any other kind.
    """
    if isinstance(value, AccountData):
        return value
    if isinstance(value, Account):
        data = bytes(value.data)
        return AccountData(
            data=EncodedBinary(base64.b64encode(data).decode("ascii")),
            executable=value.executable,
            lamports=value.lamports,
            owner=str(value.owner),
            space=len(data),
        )
    raise InvalidParams(f"{what} must be an Account or AccountData, not {type(value).__name__}")


def account_mods(value: object, what: str = "modify_account_states") -> dict[str, AccountData]:
    """Account overrides with ``str`` keys and ``AccountData`` values, in address order.

    Raises:
        InvalidParams: not a mapping, a key that is not an address, a value of the wrong kind
            (the message names the address).
    """
    if not isinstance(value, Mapping):
        raise InvalidParams(f"{what} must be a mapping, not {type(value).__name__}")
    items: Mapping[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
    keyed: list[tuple[bytes, str, AccountData]] = []
    for key, account in items.items():
        address = address_text(key, f"{what} key")
        keyed.append((bytes(Pubkey.from_string(address)), address, account_data(account, address)))
    keyed.sort(key=lambda item: item[0])
    return {address: account for _, address, account in keyed}


def account_data_json(account: AccountData) -> JsonObject:
    """The §3.2 JSON object of one ``AccountData`` (keys in wire order)."""
    return {
        "data": {"data": account.data.data, "encoding": account.data.encoding},
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": account.owner,
        "space": account.space,
    }


# --------------------------------------------------------------------------------------------
# Wire -> public values
# --------------------------------------------------------------------------------------------


@attrs.frozen
class SimulationResult:
    """What ``simulateTransaction`` reported: ``err`` is the raw JSON error, None on success."""

    err: JsonValue
    logs: list[str] | None
    units_consumed: int | None


def _bad(method: str, result: JsonValue) -> ProtocolError:
    return ProtocolError(f"unexpected {method} result", data=_dump(result))


def _dump(value: JsonValue) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return repr(value).encode()


def _value(result: JsonValue) -> JsonValue:
    """``result.value`` of a ``{"context", "value"}`` wrapper, else ``result`` itself."""
    wrapped = as_object(result)
    if wrapped is not None and "value" in wrapped and "context" in wrapped:
        return wrapped["value"]
    return result


def int_result(result: JsonValue, method: str) -> int:
    """A non-negative integer result (``getSlot``, rent minimum), wrapped or not."""
    value = _value(result)
    if not is_int(value) or value < 0:
        raise _bad(method, result)
    number: int = value
    return number


def balance_result(result: JsonValue) -> int:
    """``getBalance``: lamports."""
    return int_result(result, "getBalance")


def blockhash_result(result: JsonValue) -> Hash:
    """``getLatestBlockhash``: the blockhash of ``value``."""
    value = as_object(_value(result))
    text = value.get("blockhash") if value is not None else None
    if not isinstance(text, str):
        raise _bad("getLatestBlockhash", result)
    try:
        return Hash.from_string(text)
    except ValueError:
        raise _bad("getLatestBlockhash", result) from None


def _account(value: JsonValue, method: str) -> Account | None:
    if value is None:
        return None
    obj = as_object(value)
    if obj is None:
        raise _bad(method, value)
    lamports = obj.get("lamports")
    owner = obj.get("owner")
    executable = obj.get("executable", False)
    rent_epoch = obj.get("rentEpoch", 0)
    if not (isinstance(lamports, int) and isinstance(owner, str) and isinstance(executable, bool)):
        raise _bad(method, value)
    if not is_int(rent_epoch):
        rent_epoch = 0
    try:
        return Account(
            lamports=lamports,
            data=_account_bytes(obj.get("data"), method),
            owner=Pubkey.from_string(owner),
            executable=executable,
            rent_epoch=rent_epoch,
        )
    except (ValueError, OverflowError):
        raise _bad(method, value) from None


def _account_bytes(data: JsonValue, method: str) -> bytes:
    """``["<base64>", "base64"]`` (standard), ``{"data", "encoding"}`` (§3.2) or bare text."""
    text: JsonValue = data
    encoding: JsonValue = "base64"
    pair = as_list(data)
    obj = as_object(data)
    if pair is not None and len(pair) == 2:
        text, encoding = pair[0], pair[1]
    elif obj is not None:
        text, encoding = obj.get("data"), obj.get("encoding", "base64")
    if not isinstance(text, str) or encoding != "base64":
        raise _bad(method, data)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(method, data) from None


def account_result(result: JsonValue) -> Account | None:
    """``getAccountInfo``: the account, or None when it does not exist."""
    return _account(_value(result), "getAccountInfo")


def multiple_accounts_result(result: JsonValue, count: int) -> list[Account | None]:
    """``getMultipleAccounts``: one entry per requested address, in order."""
    entries = as_list(_value(result))
    if entries is None or len(entries) != count:
        raise _bad("getMultipleAccounts", result)
    return [_account(item, "getMultipleAccounts") for item in entries]


def program_accounts_result(result: JsonValue) -> list[tuple[Pubkey, Account]]:
    """``getProgramAccounts``: ``(address, account)`` pairs as the server listed them."""
    entries = as_list(_value(result))
    if entries is None:
        raise _bad("getProgramAccounts", result)
    pairs: list[tuple[Pubkey, Account]] = []
    for item in entries:
        entry = as_object(item)
        if entry is None:
            raise _bad("getProgramAccounts", result)
        key = entry.get("pubkey")
        account = _account(entry.get("account"), "getProgramAccounts")
        if not isinstance(key, str) or account is None:
            raise _bad("getProgramAccounts", result)
        try:
            pairs.append((Pubkey.from_string(key), account))
        except ValueError:
            raise _bad("getProgramAccounts", result) from None
    return pairs


def _status(item: JsonValue) -> TransactionStatus | None:
    if item is None:
        return None
    entry = as_object(item)
    if entry is None:
        raise _bad("getSignatureStatuses", item)
    err = entry.get("err")
    normalised: JsonObject = {
        "slot": entry.get("slot"),
        "confirmations": entry.get("confirmations"),
        "err": err,
        "status": entry.get("status", {"Ok": None} if err is None else {"Err": err}),
        "confirmationStatus": entry.get("confirmationStatus"),
    }
    try:
        return TransactionStatus.from_json(orjson.dumps(normalised).decode())
    except ValueError:
        raise _bad("getSignatureStatuses", item) from None


def signature_statuses_result(result: JsonValue, count: int) -> list[TransactionStatus | None]:
    """``getSignatureStatuses``: per signature, its status, or None when it is unknown."""
    entries = as_list(_value(result))
    if entries is None or len(entries) != count:
        raise _bad("getSignatureStatuses", result)
    return [_status(item) for item in entries]


def transaction_result(result: JsonValue) -> dict[str, JsonValue] | None:
    """``getTransaction``: the raw JSON object, or None when the signature is unknown."""
    if result is None:
        return None
    obj = as_object(result)
    if obj is None:
        raise _bad("getTransaction", result)
    return obj


def simulation_result(result: JsonValue) -> SimulationResult:
    """``simulateTransaction``: the error (raw JSON), the log lines and the units consumed."""
    obj = as_object(_value(result))
    if obj is None:
        raise _bad("simulateTransaction", result)
    raw_logs = obj.get("logs")
    units = obj.get("unitsConsumed")
    logs: list[str] | None = None
    if raw_logs is not None:
        lines = as_list(raw_logs)
        if lines is None or not all(isinstance(line, str) for line in lines):
            raise _bad("simulateTransaction", result)
        logs = [str(line) for line in lines]
    if units is not None and not is_int(units):
        raise _bad("simulateTransaction", result)
    return SimulationResult(obj.get("err"), logs, units)


def signature_result(result: JsonValue, method: str) -> Signature:
    """``sendTransaction`` / ``requestAirdrop``: the transaction's signature."""
    if not isinstance(result, str):
        raise _bad(method, result)
    try:
        return Signature.from_string(result)
    except ValueError:
        raise _bad(method, result) from None
