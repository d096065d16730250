"""Data-plane subscriptions outside a managed session (protocol §9, §10).

:func:`open_account_diff_subscription`, :func:`open_transaction_subscription` and
:func:`open_logs_subscription` run one :class:`~simtrio.managed.subscription.SubscriptionManager`
for the block and hand its notifications over through a bounded channel.
"""

from __future__ import annotations

__all__: list[str] = []

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Generic

import trio

from simtrio.core.groups import unwrapped
from simtrio.errors import InvalidParams, SimtrioError, SubscriptionFailed
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.data_link import SubscriptionObserver
from simtrio.managed.queue import QueueReceiveChannel, QueueSendChannel, open_queue
from simtrio.managed.subscription import SubscriptionManager
from simtrio.managed.subscription_kinds import (
    ACCOUNT_DIFFS,
    LOGS,
    TRANSACTIONS,
    E,
    SubscriptionKind,
    check_program_ids,
)
from simtrio.wire.urls import http_to_ws_url, split_ws_url

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence
    from contextlib import AbstractAsyncContextManager

    from simtrio.events import AccountDiff, ProgramLogs, Transaction


class _ChannelObserver(SubscriptionObserver, Generic[E]):
    __slots__ = ("_send",)

    def __init__(self, send: QueueSendChannel[E]) -> None:
        self._send = send

    def finished(self) -> None:
        self._send.close()


class DataSubscription(Generic[E]):
    """What ``open_*_subscription`` yields: ``notifications`` ends after every terminal.

    ``notifications`` is a trio ``ReceiveChannel`` with a memory channel's behaviour for one
    receiver (no ``clone``); it yields to the scheduler every 256 queued items rather than on
    every ``receive``, so that a whole socket read is handed over without a task switch each.
    """

    __slots__ = ("_manager", "notifications")

    def __init__(
        self, notifications: QueueReceiveChannel[E], manager: SubscriptionManager[E]
    ) -> None:
        self.notifications = notifications
        self._manager = manager

    def __repr__(self) -> str:
        return f"<DataSubscription {self._manager.kind.label} {self.connection_status.name}>"

    @property
    def connection_status(self) -> ConnectionStatus:
        return self._manager.status.value

    @property
    def cursor(self) -> int | None:
        """Slot of the last delivered notification."""
        return self._manager.cursor

    async def wait_up(self) -> None:
        """Wait until every subscription is acknowledged (or the stream has ended)."""
        manager = self._manager
        await manager.status.wait_until(
            lambda s: s in (ConnectionStatus.UP, ConnectionStatus.FAILED) or manager.finished
        )


def open_account_diff_subscription(
    rpc_endpoint: str, program_ids: Sequence[str], *, config: ManagedConfig | None = None
) -> AbstractAsyncContextManager[DataSubscription[AccountDiff]]:
    """Account diffs of ``program_ids`` from a session's data plane, outside a managed session.

    ``rpc_endpoint`` is the session's ``http(s)://`` endpoint. ``notifications`` ends once every
    program's terminal arrived. A give-up raises ``SubscriptionFailed`` out of the block.
    """
    return _open_standalone(ACCOUNT_DIFFS, rpc_endpoint, program_ids, config)


def open_transaction_subscription(
    rpc_endpoint: str, program_ids: Sequence[str], *, config: ManagedConfig | None = None
) -> AbstractAsyncContextManager[DataSubscription[Transaction]]:
    """Transactions involving ``program_ids``; see :func:`open_account_diff_subscription`."""
    return _open_standalone(TRANSACTIONS, rpc_endpoint, program_ids, config)


def open_logs_subscription(
    rpc_url: str, program_ids: Sequence[str], *, config: ManagedConfig | None = None
) -> AbstractAsyncContextManager[DataSubscription[ProgramLogs]]:
    """``logsSubscribe`` for each of ``program_ids`` (its ``mentions`` filter), as
    :class:`~simtrio.events.ProgramLogs` events; see :func:`open_account_diff_subscription`."""
    return _open_standalone(LOGS, rpc_url, program_ids, config)


@asynccontextmanager
async def _open_standalone(
    kind: SubscriptionKind[E],
    rpc_endpoint: str,
    program_ids: Sequence[str],
    config: ManagedConfig | None,
) -> AsyncGenerator[DataSubscription[E]]:
    if config is None:
        config = ManagedConfig()
    elif not isinstance(config, ManagedConfig):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams("config must be a ManagedConfig")
    if not isinstance(rpc_endpoint, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams("rpc_endpoint must be a str")
    split_ws_url(http_to_ws_url(rpc_endpoint))  # an unusable URL fails here, before any task
    ids = check_program_ids(program_ids)
    send: QueueSendChannel[E]
    receive: QueueReceiveChannel[E]
    send, receive = open_queue(config.event_buffer, config.event_buffer_bytes)
    manager = SubscriptionManager(
        rpc_endpoint=rpc_endpoint,
        kind=kind,
        program_ids=ids,
        config=config,
        deliver=send.send_sized,
        deliver_nowait=send.try_send,
        observer=_ChannelObserver(send),
        first_connect_max_total=config.first_connect_max_total,
    )
    failures: list[SubscriptionFailed] = []

    async def run(scope: trio.CancelScope) -> None:
        try:
            await manager.run()
        except SubscriptionFailed as exc:
            failures.append(exc)
            scope.cancel()  # the body too: its data can no longer be trusted to be complete

    try:
        with unwrapped(prefer=SimtrioError, ignoring=trio.Cancelled):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, nursery.cancel_scope)
                try:
                    yield DataSubscription(receive, manager)
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        send.close()
    if failures:
        raise failures[0]
