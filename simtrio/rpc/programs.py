"""``modify_program``: the account states that inject a program, with the rent asked of the RPC."""

from __future__ import annotations

__all__: list[str] = []

import logging
import random
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import ConnectError, RequestTimeout, RpcHttpError
from simtrio.wire.programs import (
    PROGRAM_ACCOUNT_LEN,
    PROGRAMDATA_HEADER_LEN,
    build_program_account,
    build_program_injection,
    deploy_slot_for,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from solders.pubkey import Pubkey

    from simtrio.rpc.session import SessionRpc
    from simtrio.wire.jsonrpc import AddressInput
    from simtrio.wire.types import AccountData

logger = logging.getLogger(__name__)

MODIFY_PROGRAM_RETRIES: Final = 10
"""Retries of each RPC call :func:`modify_program` makes."""
MODIFY_PROGRAM_BACKOFF: Final = BackoffPolicy(initial=1.0, max=10.0, multiplier=2.0, jitter="full")
"""1 s doubling, each delay capped at 10 s, full jitter."""

_T = TypeVar("_T")


def _transient(exc: Exception) -> bool:
    if isinstance(exc, ConnectError):
        return not exc.fatal
    return isinstance(exc, RequestTimeout | RpcHttpError)


async def retry_call(
    call: Callable[[], Awaitable[_T]],
    *,
    retries: int = MODIFY_PROGRAM_RETRIES,
    backoff: BackoffPolicy = MODIFY_PROGRAM_BACKOFF,
    rng: random.Random | None = None,
) -> _T:
    """Await ``call()`` again after a transient failure (unreachable, timed out, HTTP status),
    at most ``retries`` times; a JSON-RPC error or a fatal failure is raised at once."""
    rng = rng if rng is not None else random.Random()
    attempt = 0
    while True:
        try:
            return await call()
        except (ConnectError, RequestTimeout, RpcHttpError) as exc:
            if not _transient(exc) or attempt >= retries:
                raise
            delay = backoff.delay(attempt, rng)
            logger.info("rpc call failed (%s); retry %d in %.3f s", exc, attempt + 1, delay)
            attempt += 1
            await trio.sleep(delay)


async def modify_program(
    rpc: SessionRpc,
    program_id: AddressInput,
    elf: bytes,
    *,
    start_slot: int,
    create: bool = False,
    upgrade_authority: AddressInput | None = None,
    rng: random.Random | None = None,
) -> dict[Pubkey, AccountData]:
    """The account states that make ``elf`` the code of ``program_id`` from ``start_slot`` on.

    Asks ``rpc`` for the rent-exempt minimum of the ProgramData account (and of the Program
    account when ``create`` is true, for a program that does not exist at that slot), then
    builds them with ``deploy_slot = max(start_slot - 1, 0)``. The map (ProgramData first) is
    ready for ``Continue(modify_account_states=...)`` or ``rpc.modify_accounts``.

    Each RPC call is retried after a transient failure up to 10 times, waiting 1 s doubling,
    each delay capped at 10 s, with full jitter.

    Raises:
        InvalidParams: an argument of the wrong kind (before any I/O).
        RpcError, ConnectError, RequestTimeout: the RPC failed for good.
    """
    deploy_slot = deploy_slot_for(start_slot)
    # Build once with a placeholder to validate everything before any I/O.
    build_program_injection(
        program_id, elf, deploy_slot=deploy_slot, upgrade_authority=upgrade_authority, lamports=0
    )
    size = PROGRAMDATA_HEADER_LEN + len(elf)
    data_rent = await retry_call(lambda: rpc.get_minimum_balance_for_rent_exemption(size), rng=rng)
    states = build_program_injection(
        program_id,
        elf,
        deploy_slot=deploy_slot,
        upgrade_authority=upgrade_authority,
        lamports=data_rent,
    )
    if create:
        program_rent = await retry_call(
            lambda: rpc.get_minimum_balance_for_rent_exemption(PROGRAM_ACCOUNT_LEN), rng=rng
        )
        states.update(build_program_account(program_id, lamports=program_rent))
    return states
