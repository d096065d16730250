"""Per-session JSON-RPC of the reference server (``POST /backtest/<id>``), served from LiteSVM.

Standard Solana shapes for the methods simtrio's ``SessionRpc`` uses, plus the non-standard
``modifyAccounts``. Reads carry ``{"context": {"slot"}, "value"}`` where Solana's do; the slot
is the session's current one. ``sendTransaction`` executes at once at the current slot and
answers with the signature whether the transaction succeeded or failed (the outcome is in
``getSignatureStatuses``/``getTransaction`` and the data plane, as for a continue's
transactions). Unknown methods are -32601, bad params -32602.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import orjson
from solders.pubkey import Pubkey
from solders.signature import Signature

from simtrio.server.boundaries import SOLDERS_REJECTS, map_exceptions
from simtrio.server.executor import (
    BLOCKHASH_VALID_SLOTS,
    AccountRejected,
    ChainUnavailable,
    TransactionRejected,
    decode_base64_transaction,
)
from simtrio.server.solana_json import ui_account
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.rules import U64_MAX
from simtrio.wire.types import AccountData, EncodedBinary

if TYPE_CHECKING:
    from collections.abc import Callable

    from solders.account import Account
    from solders.transaction import VersionedTransaction

    from simtrio.server.session import Session
    from simtrio.wire.jsontext import JsonValue

logger = logging.getLogger(__name__)

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
SERVER_BUSY: Final = -32005
"""The server keeps as many LiteSVMs as it may (Solana's "node is behind/busy" range)."""
MAX_ACCOUNTS: Final = 100
"""Addresses one ``getMultipleAccounts`` may ask for (Solana's limit)."""
MAX_SIGNATURES: Final = 256
"""Signatures one ``getSignatureStatuses`` may ask for (Solana's limit)."""
MAX_BATCH: Final = 100
"""Requests one batch may hold."""

_Object: TypeAlias = "dict[str, JsonValue]"
_Params: TypeAlias = "list[JsonValue]"


class _BadParams(Exception):
    """-32602 with this message."""


_REFUSED_BY_CHAIN: Final = map_exceptions(
    (TransactionRejected, AccountRejected), lambda exc: _BadParams(str(exc))
)
"""A transaction or account the chain refused is the caller's bad params."""


def _unparsable(what: str, value: str, shown: int) -> map_exceptions:
    """What solders cannot parse is bad params: ``what``, then the start of ``value``."""
    return map_exceptions(SOLDERS_REJECTS, lambda _exc: _BadParams(f"{what}: {value[:shown]!r}"))


def rpc_reply(session: Session, body: bytes) -> bytes:
    """Answer one HTTP body: a request or a batch of them."""
    try:
        parsed: JsonValue = orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps(_error(None, PARSE_ERROR, "parse error"))
    if isinstance(parsed, list):
        items: list[JsonValue] = parsed  # pyright: ignore[reportUnknownVariableType]
        if not items or len(items) > MAX_BATCH:
            return orjson.dumps(_error(None, INVALID_REQUEST, "invalid batch size"))
        return orjson.dumps([_one(session, item) for item in items])
    return orjson.dumps(_one(session, parsed))


def _one(session: Session, request: JsonValue) -> JsonValue:
    if not isinstance(request, dict):
        return _error(None, INVALID_REQUEST, "invalid request")
    fields = cast("_Object", request)
    request_id = fields.get("id")
    if isinstance(request_id, (dict, list, float)):
        request_id = None
    method = fields.get("method")
    if not isinstance(method, str):
        return _error(request_id, INVALID_REQUEST, "invalid request")
    handler = METHODS.get(method)
    if handler is None:
        return _error(request_id, METHOD_NOT_FOUND, "method not found")
    raw = fields.get("params")
    if raw is None:
        params: _Params = []
    elif isinstance(raw, list):
        params = raw  # pyright: ignore[reportUnknownVariableType]
    elif method == "modifyAccounts" and isinstance(raw, dict):
        params = [raw]
    else:
        return _error(request_id, INVALID_PARAMS, "invalid params: expected an array")
    try:
        result = handler(session, params)
    except _BadParams as exc:
        return _error(request_id, INVALID_PARAMS, f"invalid params: {exc}")
    except ChainUnavailable as exc:
        return _error(request_id, SERVER_BUSY, str(exc))
    except Exception:
        logger.exception("rpc %s on session %s failed", method, session.id)
        return _error(request_id, INTERNAL_ERROR, "internal error")
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _error(request_id: JsonValue, code: int, message: str) -> JsonValue:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


# -- params ------------------------------------------------------------------------------------


def _arg(params: _Params, index: int, what: str) -> JsonValue:
    if index >= len(params):
        raise _BadParams(f"missing {what}")
    return params[index]


def _config(params: _Params, index: int) -> _Object:
    if index >= len(params) or params[index] is None:
        return {}
    value = params[index]
    if not isinstance(value, dict):
        raise _BadParams("the config must be an object")
    return cast("_Object", value)


def _encoding(config: _Object, allowed: str) -> None:
    encoding = config.get("encoding")
    if encoding is not None and encoding != allowed:
        raise _BadParams(f"unsupported encoding {encoding!r} (only {allowed!r})")


def _pubkey(value: JsonValue) -> Pubkey:
    if not isinstance(value, str):
        raise _BadParams("an address must be a base58 string")
    with _unparsable("not a 32-byte base58 address", value, 60):
        return Pubkey.from_string(value)


def _uint(value: JsonValue, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64_MAX:
        raise _BadParams(f"{what} must be an unsigned 64-bit integer")
    return value


def _transaction(params: _Params) -> VersionedTransaction:
    text = _arg(params, 0, "transaction")
    _encoding(_config(params, 1), "base64")
    if not isinstance(text, str):
        raise _BadParams("the transaction must be base64 text")
    with _REFUSED_BY_CHAIN:
        return decode_base64_transaction(text)


def _list(value: JsonValue, what: str, limit: int) -> _Params:
    if not isinstance(value, list):
        raise _BadParams(f"{what} must be an array")
    items: _Params = value  # pyright: ignore[reportUnknownVariableType]
    if len(items) > limit:
        raise _BadParams(f"at most {limit} {what}")
    return items


def _context(session: Session, value: JsonValue) -> JsonValue:
    return {"context": {"slot": session.slot}, "value": value}


def _ui(account: Account | None) -> JsonValue:
    return None if account is None else ui_account(account)


# -- methods -----------------------------------------------------------------------------------


def _get_health(_session: Session, _params: _Params) -> JsonValue:
    return "ok"


def _get_slot(session: Session, _params: _Params) -> JsonValue:
    return session.slot


def _get_latest_blockhash(session: Session, _params: _Params) -> JsonValue:
    blockhash = session.chain.latest_blockhash(session.slot)
    return _context(
        session,
        {"blockhash": str(blockhash), "lastValidBlockHeight": session.slot + BLOCKHASH_VALID_SLOTS},
    )


def _get_balance(session: Session, params: _Params) -> JsonValue:
    address = _pubkey(_arg(params, 0, "address"))
    account = session.chain.get_account(address, session.slot)
    return _context(session, 0 if account is None else account.lamports)


def _get_account_info(session: Session, params: _Params) -> JsonValue:
    address = _pubkey(_arg(params, 0, "address"))
    _encoding(_config(params, 1), "base64")
    return _context(session, _ui(session.chain.get_account(address, session.slot)))


def _get_multiple_accounts(session: Session, params: _Params) -> JsonValue:
    addresses = [
        _pubkey(item) for item in _list(_arg(params, 0, "addresses"), "addresses", MAX_ACCOUNTS)
    ]
    _encoding(_config(params, 1), "base64")
    chain = session.chain
    return _context(session, [_ui(chain.get_account(a, session.slot)) for a in addresses])


def _get_program_accounts(session: Session, params: _Params) -> JsonValue:
    program = _pubkey(_arg(params, 0, "program id"))
    config = _config(params, 1)
    _encoding(config, "base64")
    if config.get("filters"):
        raise _BadParams("filters are not supported")
    found: list[JsonValue] = [
        {"pubkey": str(key), "account": ui_account(account)}
        for key, account in session.chain.program_accounts(program, session.slot)
    ]
    return _context(session, found) if config.get("withContext") is True else found


def _get_minimum_balance(session: Session, params: _Params) -> JsonValue:
    size = _uint(_arg(params, 0, "data length"), "the data length")
    if size > 10 * 1024 * 1024:
        raise _BadParams("the data length is above 10 MiB")
    return session.chain.minimum_balance(size, session.slot)


def _get_signature_statuses(session: Session, params: _Params) -> JsonValue:
    texts = _list(_arg(params, 0, "signatures"), "signatures", MAX_SIGNATURES)
    statuses: list[JsonValue] = []
    for text in texts:
        record = session.chain.record(_signature(text))
        statuses.append(None if record is None else record.status())
    return _context(session, statuses)


def _get_transaction(session: Session, params: _Params) -> JsonValue:
    signature = _signature(_arg(params, 0, "signature"))
    config = params[1] if len(params) > 1 else None
    if isinstance(config, str):  # the old positional encoding form
        config = {"encoding": config}
    _encoding(_config([config], 0), "json")
    record = session.chain.record(signature)
    return None if record is None else record.payload


def _signature(value: JsonValue) -> str:
    if not isinstance(value, str):
        raise _BadParams("a signature must be base58 text")
    with _unparsable("not a 64-byte base58 signature", value, 100):
        return str(Signature.from_string(value))


def _simulate_transaction(session: Session, params: _Params) -> JsonValue:
    tx = _transaction(params)
    config = _config(params, 1)
    verify = config.get("sigVerify", False)
    replace = config.get("replaceRecentBlockhash", False)
    if not isinstance(verify, bool) or not isinstance(replace, bool):
        raise _BadParams("sigVerify and replaceRecentBlockhash must be booleans")
    if verify and replace:
        raise _BadParams("sigVerify may not be used with replaceRecentBlockhash")
    with _REFUSED_BY_CHAIN:
        simulated = session.chain.simulate(
            tx, session.slot, verify_signatures=verify, replace_blockhash=replace
        )
    value: dict[str, JsonValue] = {
        "err": simulated.err,
        "logs": list(simulated.logs),
        "accounts": None,
        "unitsConsumed": simulated.units_consumed,
        "returnData": None,
    }
    if simulated.replacement_blockhash is not None:
        value["replacementBlockhash"] = {
            "blockhash": str(simulated.replacement_blockhash),
            "lastValidBlockHeight": session.slot + BLOCKHASH_VALID_SLOTS,
        }
    return _context(session, value)


def _send_transaction(session: Session, params: _Params) -> JsonValue:
    tx = _transaction(params)
    _room(session)
    return session.execute_user(tx).signature


def _room(session: Session) -> None:
    if session.user_room() <= 0:
        raise ChainUnavailable("this slot takes no more user transactions; advance the session")


def _request_airdrop(session: Session, params: _Params) -> JsonValue:
    address = _pubkey(_arg(params, 0, "address"))
    lamports = _uint(_arg(params, 1, "lamports"), "lamports")
    if lamports == 0 or lamports > 2**63:
        raise _BadParams("lamports must be between 1 and 2^63")
    _room(session)
    done = session.chain.airdrop(address, lamports, session.slot)
    session.publish(done)
    return done.signature


def _modify_accounts(session: Session, params: _Params) -> JsonValue:
    mods = _arg(params, 0, "account map")
    if not isinstance(mods, dict):
        raise _BadParams("expected a map of address to AccountData")
    states = {
        address: _account_data(address, value) for address, value in cast("_Object", mods).items()
    }
    with _REFUSED_BY_CHAIN:
        session.chain.set_accounts(states, session.slot)
    session.overrides.update(states)
    return None


def _account_data(address: str, value: JsonValue) -> AccountData:
    """An ``AccountData`` object (protocol §3.2), strictly typed."""
    if not isinstance(value, dict):
        raise _BadParams(f"{address}: an account must be an AccountData object")
    fields = cast("_Object", value)
    data = fields.get("data")
    executable = fields.get("executable")
    owner = fields.get("owner")
    if not isinstance(data, dict):
        raise _BadParams(f"{address}: data must be {{data, encoding}}")
    binary = cast("_Object", data)
    text, encoding = binary.get("data"), binary.get("encoding", "base64")
    if not isinstance(text, str) or not isinstance(encoding, str):
        raise _BadParams(f"{address}: data must be {{data, encoding}} strings")
    if not isinstance(executable, bool) or not isinstance(owner, str):
        raise _BadParams(f"{address}: executable must be a bool and owner a string")
    lamports = _uint(fields.get("lamports"), f"{address}: lamports")
    space_value = fields.get("space", 0)
    space = _uint(space_value, f"{address}: space")
    return AccountData(EncodedBinary(text, encoding), executable, lamports, owner, space)


METHODS: Final[dict[str, Callable[[Session, _Params], JsonValue]]] = {
    "getHealth": _get_health,
    "getSlot": _get_slot,
    "getLatestBlockhash": _get_latest_blockhash,
    "getBalance": _get_balance,
    "getAccountInfo": _get_account_info,
    "getMultipleAccounts": _get_multiple_accounts,
    "getProgramAccounts": _get_program_accounts,
    "getMinimumBalanceForRentExemption": _get_minimum_balance,
    "getSignatureStatuses": _get_signature_statuses,
    "getTransaction": _get_transaction,
    "simulateTransaction": _simulate_transaction,
    "sendTransaction": _send_transaction,
    "requestAirdrop": _request_airdrop,
    "modifyAccounts": _modify_accounts,
}
"""Every method served, by JSON-RPC name."""
