"""Honest first connections: malformed URLs, unknown hosts and unusable TLS fail at once,
a refused server is retried only within ``first_connect_max_total``.

The same rules hold for managed sessions, parallel sessions and standalone subscriptions.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from simtrio.errors import ConnectError, CreateFailed, InvalidParams, SubscriptionFailed
from simtrio.managed.config import ManagedConfig
from simtrio.managed.parallel import open_parallel_session
from simtrio.managed.session import open_managed_session
from simtrio.managed.standalone import open_account_diff_subscription
from simtrio.params import CreateSession
from tests.managed.test_subscriptions_harness import TOKEN
from tests.resolver import install_unknown_hosts

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

KEY = "sk-connect-failures-secret"
CREATE = CreateSession(4000, end_slot=4003, disconnect_timeout_secs=120)
CONFIG = ManagedConfig(rng_seed=5)


def _session(url: str, config: ManagedConfig) -> AbstractAsyncContextManager[Any]:
    return open_managed_session(url, KEY, CREATE, config=config)


def _parallel(url: str, config: ManagedConfig) -> AbstractAsyncContextManager[Any]:
    return open_parallel_session(url, KEY, CREATE, config=config)


def _subscription(url: str, config: ManagedConfig) -> AbstractAsyncContextManager[Any]:
    http = url.replace("wss://", "https://").replace("ws://", "http://")
    if "://" not in http:
        http = "http://" + http
    return open_account_diff_subscription(f"{http}/backtest/s1", [TOKEN], config=config)


OPENERS = [
    pytest.param(_session, CreateFailed, id="session"),
    pytest.param(_parallel, CreateFailed, id="parallel"),
    pytest.param(_subscription, SubscriptionFailed, id="subscription"),
]


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _fail(opener: Callable[..., Any], url: str, config: ManagedConfig) -> BaseException:
    with (
        trio.fail_after(3600),
        pytest.raises((CreateFailed, SubscriptionFailed, InvalidParams)) as info,
    ):
        async with opener(url, config):
            # A managed session never gets here; a subscription's failure cancels this.
            await trio.sleep_forever()
    return info.value


@pytest.mark.parametrize(("opener", "error"), OPENERS)
async def test_refused_first_connection_gives_up_after_the_short_budget(
    autojump_clock: trio.testing.MockClock, opener: Callable[..., Any], error: type[Exception]
) -> None:
    """The outage budget is 900 s; a server that was never reached gets 10 s."""
    start = trio.current_time()
    # A real refused connect (the port is bound, nobody listens): nothing the clock can race.
    failure = await _fail(opener, f"ws://127.0.0.1:{_refused_port()}", CONFIG)
    assert isinstance(failure, error)
    assert 9.0 <= trio.current_time() - start <= 10.5
    assert "connection refused" in str(failure)
    assert KEY not in str(failure)


@pytest.mark.parametrize(("opener", "error"), OPENERS)
async def test_unknown_host_fails_at_the_first_attempt_with_its_cause(
    autojump_clock: trio.testing.MockClock,
    opener: Callable[..., Any],
    error: type[Exception],
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_unknown_hosts()
    start = trio.current_time()
    failure = await _fail(opener, "ws://no-such-host.invalid:9", CONFIG)
    assert trio.current_time() == start
    assert isinstance(failure, error)
    assert "cannot resolve host 'no-such-host.invalid'" in str(failure)
    assert not [r for r in caplog.records if "attempt failed" in r.getMessage()]


@pytest.mark.parametrize(("opener", "error"), OPENERS)
async def test_tls_to_a_plain_port_fails_at_the_first_attempt_with_its_cause(
    opener: Callable[..., Any], error: type[Exception]
) -> None:
    accepted: list[int] = []

    async def plain(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, plain, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(20):
            failure = await _fail(opener, f"wss://127.0.0.1:{port}", CONFIG)
        nursery.cancel_scope.cancel()
    assert isinstance(failure, error)
    assert "TLS handshake" in str(failure)
    assert "wrong version number" in str(failure)
    # One connection per attempt: no retry. (A standalone subscription also asks the session
    # RPC for its start slot, over HTTPS to the same port, before it subscribes.)
    assert len(accepted) == (2 if opener is _subscription else 1)


@pytest.mark.parametrize(("opener", "error"), OPENERS)
async def test_malformed_url_fails_at_once(
    autojump_clock: trio.testing.MockClock, opener: Callable[..., Any], error: type[Exception]
) -> None:
    start = trio.current_time()
    failure = await _fail(opener, "not a url", CONFIG)
    assert trio.current_time() == start
    # Managed sessions report it as their create failing, a standalone subscription as the
    # unusable endpoint it was given.
    assert isinstance(failure, error if error is CreateFailed else InvalidParams)
    assert "host" in str(failure)


async def test_the_fatal_cause_is_chained() -> None:
    install_unknown_hosts()
    with trio.fail_after(20), pytest.raises(CreateFailed) as info:
        async with _session("ws://no-such-host.invalid:9", CONFIG):
            raise AssertionError("not reached")
    assert isinstance(info.value.__cause__, ConnectError)
    assert info.value.__cause__.fatal
