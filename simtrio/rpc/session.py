"""``SessionRpc``: a session's JSON-RPC endpoint over one pooled ``httpx.AsyncClient``.

The shaping of every request and reply is in :mod:`simtrio.wire.jsonrpc`; this module only
posts bodies, bounds each call with a deadline, retries reads after transport failures, and
maps every httpx exception onto simtrio's errors at one place (:meth:`SessionRpc._post`).
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import attrs
import httpx
import trio

from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import (
    ConnectError,
    InvalidParams,
    RequestTimeout,
    RpcError,
    RpcHttpError,
    excerpt,
)
from simtrio.wire import jsonrpc
from simtrio.wire.jsonrpc import (
    READ_METHODS,
    AccountMods,
    AddressInput,
    SimulationResult,
    TransactionInput,
)
from simtrio.wire.jsontext import JsonValue
from simtrio.wire.redact import Redactor

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator, Generator

    from solders.account import Account
    from solders.hash import Hash
    from solders.pubkey import Pubkey
    from solders.signature import Signature
    from solders.transaction_status import TransactionStatus

    from simtrio.managed.config import ManagedConfig, SessionInfo

logger = logging.getLogger(__name__)

DEFAULT_RPC_TIMEOUT: Final = 30.0
"""Bound of one call (retries included) where no client ``request_timeout`` applies."""
DEFAULT_READ_RETRIES: Final = 3
"""Retries of a read after a transport failure; writes are never sent twice."""

_CONTENT_TYPE: Final = {"Content-Type": "application/json"}

RpcExchange: TypeAlias = tuple[str, JsonValue, JsonValue, RpcError | None]
"""``(method, params, result, error)`` of one answered call, as an observer sees it."""
RpcObserver: TypeAlias = Callable[[str, JsonValue, JsonValue, "RpcError | None"], None]
"""Called once per call that got an answer (a result or a JSON-RPC error), e.g. a recorder."""


@attrs.define(eq=False, repr=False)
class SessionRpc:
    """Typed JSON-RPC calls to one session's endpoint (obtain one from :func:`open_session_rpc`
    or a session's ``rpc()``).

    Every method is bounded by the call's ``timeout`` (retries included) and raises:

    * :class:`~simtrio.errors.RpcError` for a JSON-RPC error object (``code``, ``message``,
      ``data``), :class:`~simtrio.errors.RpcHttpError` for an HTTP status other than 200;
    * :class:`~simtrio.errors.ConnectError` when the endpoint cannot be reached (reads are
      retried first, with backoff, up to ``read_retries`` times);
    * :class:`~simtrio.errors.RequestTimeout` when the deadline passes;
    * :class:`~simtrio.errors.ProtocolError` for a reply that is not JSON-RPC;
    * :class:`~simtrio.errors.InvalidParams` for arguments of the wrong kind, before any I/O.
    """

    url: str
    _client: httpx.AsyncClient = attrs.field(alias="client")
    _timeout: float | None = attrs.field(kw_only=True, alias="timeout")
    _read_retries: int = attrs.field(kw_only=True, alias="read_retries")
    _backoff: BackoffPolicy = attrs.field(kw_only=True, alias="backoff")
    _rng: random.Random = attrs.field(kw_only=True, alias="rng")
    _observer: RpcObserver | None = attrs.field(default=None, kw_only=True, alias="observer")
    _redactor: Redactor | None = attrs.field(default=None, kw_only=True, alias="redactor")
    _ids: Iterator[int] = attrs.field(init=False, factory=lambda: itertools.count(1))

    def __repr__(self) -> str:
        return f"<SessionRpc {excerpt(self.url)}>"

    # -- the raw call -----------------------------------------------------------------------

    async def call(self, method: str, params: JsonValue = None) -> JsonValue:
        """Send any method and return its raw ``result``.

        Methods that only read (``get*``, ``simulateTransaction``) are retried after
        transport failures; every other method is sent once.
        """
        if not isinstance(method, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidParams(f"method must be a str, not {type(method).__name__}")
        body = jsonrpc.encode_request(next(self._ids), method, params)
        retries = self._read_retries if method in READ_METHODS else 0
        with _deadline(self._timeout, method):
            reply = await self._send(method, body, retries)
        try:
            result = jsonrpc.decode_response(reply)
        except RpcError as exc:
            self._observe(method, params, None, exc)
            raise
        self._observe(method, params, result, None)
        return result

    def _observe(
        self, method: str, params: JsonValue, result: JsonValue, error: RpcError | None
    ) -> None:
        if self._observer is not None:
            self._observer(method, params, result, error)

    async def _send(self, method: str, body: bytes, retries: int) -> bytes:
        attempt = 0
        while True:
            try:
                return await self._post(method, body)
            except ConnectError as exc:
                if exc.fatal or attempt >= retries:
                    raise
                delay = self._backoff.delay(attempt, self._rng)
                logger.info("rpc %s failed (%s); retrying in %.3f s", method, exc, delay)
                attempt += 1
                await trio.sleep(delay)

    async def _post(self, method: str, body: bytes) -> bytes:
        """One POST (the only place httpx is called, inside :func:`_httpx_errors`)."""
        with _httpx_errors(method):
            response = await self._client.post(self.url, content=body, headers=_CONTENT_TYPE)
        content = response.content
        if self._redactor is not None:
            content = self._redactor.data(content)
        if response.status_code != 200:
            raise RpcHttpError(
                f"rpc {method}: HTTP {response.status_code}: {excerpt(content)}",
                status=response.status_code,
            )
        return content

    # -- typed methods ----------------------------------------------------------------------

    async def get_slot(self) -> int:
        """``getSlot``: the session's current slot."""
        return jsonrpc.int_result(await self.call("getSlot"), "getSlot")

    async def get_latest_blockhash(self) -> Hash:
        """``getLatestBlockhash``: a blockhash to sign transactions with."""
        return jsonrpc.blockhash_result(await self.call("getLatestBlockhash"))

    async def get_balance(self, address: AddressInput) -> int:
        """``getBalance``: lamports held by ``address`` (0 for an unknown account)."""
        params: list[JsonValue] = [jsonrpc.address_text(address)]
        return jsonrpc.balance_result(await self.call("getBalance", params))

    async def get_account_info(self, address: AddressInput) -> Account | None:
        """``getAccountInfo`` (base64): the account, or None when it does not exist."""
        params: list[JsonValue] = [jsonrpc.address_text(address), {"encoding": "base64"}]
        return jsonrpc.account_result(await self.call("getAccountInfo", params))

    async def get_multiple_accounts(
        self, addresses: Iterable[AddressInput]
    ) -> list[Account | None]:
        """``getMultipleAccounts`` (base64): one entry per address, in order."""
        keys: list[JsonValue] = [jsonrpc.address_text(a) for a in _items(addresses, "addresses")]
        params: list[JsonValue] = [keys, {"encoding": "base64"}]
        return jsonrpc.multiple_accounts_result(
            await self.call("getMultipleAccounts", params), len(keys)
        )

    async def get_program_accounts(self, program_id: AddressInput) -> list[tuple[Pubkey, Account]]:
        """``getProgramAccounts`` (base64): every account the program owns."""
        params: list[JsonValue] = [jsonrpc.address_text(program_id), {"encoding": "base64"}]
        return jsonrpc.program_accounts_result(await self.call("getProgramAccounts", params))

    async def get_minimum_balance_for_rent_exemption(self, size: int) -> int:
        """``getMinimumBalanceForRentExemption``: lamports for ``size`` bytes of data."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidParams(f"size must be an int >= 0, got {size!r}")
        result = await self.call("getMinimumBalanceForRentExemption", [size])
        return jsonrpc.int_result(result, "getMinimumBalanceForRentExemption")

    async def get_signature_statuses(
        self, signatures: Iterable[Signature | str]
    ) -> list[TransactionStatus | None]:
        """``getSignatureStatuses``: per signature, its status, or None when it is unknown."""
        sigs: list[JsonValue] = [
            jsonrpc.signature_text(s) for s in _items(signatures, "signatures")
        ]
        params: list[JsonValue] = [sigs, {"searchTransactionHistory": True}]
        result = await self.call("getSignatureStatuses", params)
        return jsonrpc.signature_statuses_result(result, len(sigs))

    async def get_transaction(self, signature: Signature | str) -> dict[str, JsonValue] | None:
        """``getTransaction`` (json): the raw transaction object, or None when unknown."""
        params: list[JsonValue] = [
            jsonrpc.signature_text(signature),
            {"encoding": "json", "maxSupportedTransactionVersion": 0},
        ]
        return jsonrpc.transaction_result(await self.call("getTransaction", params))

    async def simulate_transaction(self, transaction: TransactionInput) -> SimulationResult:
        """``simulateTransaction`` (base64): what executing it would do; nothing changes."""
        params: list[JsonValue] = [
            jsonrpc.transaction_base64(transaction),
            {"encoding": "base64", "sigVerify": True},
        ]
        return jsonrpc.simulation_result(await self.call("simulateTransaction", params))

    async def send_transaction(self, transaction: TransactionInput) -> Signature:
        """``sendTransaction`` (base64): executes at the current slot; sent exactly once."""
        params: list[JsonValue] = [
            jsonrpc.transaction_base64(transaction),
            {"encoding": "base64"},
        ]
        return jsonrpc.signature_result(
            await self.call("sendTransaction", params), "sendTransaction"
        )

    async def request_airdrop(self, address: AddressInput, lamports: int) -> Signature:
        """``requestAirdrop``: credit ``lamports`` to ``address``; sent exactly once."""
        if isinstance(lamports, bool) or not isinstance(lamports, int) or lamports < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidParams(f"lamports must be an int >= 0, got {lamports!r}")
        params: list[JsonValue] = [jsonrpc.address_text(address), lamports]
        return jsonrpc.signature_result(await self.call("requestAirdrop", params), "requestAirdrop")

    async def modify_accounts(self, mods: AccountMods) -> None:
        """``modifyAccounts``: override accounts at once, before the next step executes.

        ``mods`` maps addresses (``Pubkey`` or ``str``) to ``Account`` or ``AccountData``
        values, as :class:`~simtrio.params.Continue` takes them. Sent exactly once; the
        server's result is ignored.
        """
        states = jsonrpc.account_mods(mods, "mods")
        payload: dict[str, JsonValue] = {
            address: jsonrpc.account_data_json(account) for address, account in states.items()
        }
        await self.call("modifyAccounts", [payload])


@contextmanager
def _httpx_errors(method: str) -> Generator[None]:
    """The httpx boundary: any httpx error of the block becomes a :class:`ConnectError`
    (``fatal`` when the url itself is unusable, so it is not retried)."""
    try:
        yield
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConnectError(f"rpc {method}: unusable url: {exc}", fatal=True) from None
    except httpx.TimeoutException as exc:
        raise ConnectError(f"rpc {method}: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise ConnectError(f"rpc {method}: {exc or type(exc).__name__}") from None


@contextmanager
def _deadline(seconds: float | None, method: str) -> Generator[None]:
    """Bound the block by ``seconds`` (None: no bound); past it, :class:`RequestTimeout`."""
    if seconds is None:
        yield
        return
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise RequestTimeout(f"rpc {excerpt(method)} timed out after {seconds:g} s") from None


def _items(values: object, name: str) -> list[object]:
    kind = type(values).__name__
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidParams(f"{name} must be an iterable, not {kind}")
    return list(cast("Iterable[object]", values))


@asynccontextmanager
async def open_session_rpc(
    url: str,
    *,
    timeout: float | None = DEFAULT_RPC_TIMEOUT,  # noqa: ASYNC109 - a per-call default
    ssl_context: ssl.SSLContext | None = None,
    read_retries: int = DEFAULT_READ_RETRIES,
    backoff: BackoffPolicy | None = None,
    rng: random.Random | None = None,
    observer: RpcObserver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    redactor: Redactor | None = None,
) -> AsyncGenerator[SessionRpc]:
    """A :class:`SessionRpc` for the ``http(s)://`` endpoint ``url``, open for the block.

    One pooled, keep-alive ``httpx.AsyncClient`` serves every call; leaving the block closes
    it. ``timeout`` bounds each call (None: no bound); ``ssl_context`` is the TLS setup for
    ``https://`` (the system default when None); ``read_retries`` and ``backoff`` shape the
    retries of reads; ``observer`` sees every answered call (a recorder uses it);
    ``transport`` replaces the network (for tests); ``redactor`` takes secrets (the API key)
    out of every answer before it is decoded, so none reaches a result, an error or a log.

    Raises:
        InvalidParams: ``url`` is not ``http://``/``https://``, or a setting is out of range.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"the rpc url must be http:// or https://, got {url!r:.80}")
    if isinstance(read_retries, bool) or not isinstance(read_retries, int) or read_retries < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"read_retries must be an int >= 0, got {read_retries!r}")
    if timeout is not None and not timeout > 0:
        raise InvalidParams(f"timeout must be None or > 0, got {timeout!r}")
    verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    async with httpx.AsyncClient(
        timeout=None, verify=verify, transport=transport, follow_redirects=False
    ) as client:
        yield SessionRpc(
            url,
            client,
            timeout=timeout,
            read_retries=read_retries,
            backoff=backoff if backoff is not None else BackoffPolicy(),
            rng=rng if rng is not None else random.Random(),
            observer=observer,
            redactor=redactor,
        )


def session_rpc(
    info: SessionInfo,
    config: ManagedConfig,
    observer: RpcObserver | None = None,
    redactor: Redactor | None = None,
) -> contextlib.AbstractAsyncContextManager[SessionRpc]:
    """:func:`open_session_rpc` for a managed (sub-)session, or ``RpcError`` at once when the
    session reported no RPC endpoint."""
    url = info.rpc_endpoint
    if not url:
        raise RpcError("session has no rpc endpoint")
    return open_session_rpc(
        url,
        ssl_context=config.ssl_context,
        backoff=config.backoff,
        observer=observer,
        redactor=redactor,
    )
