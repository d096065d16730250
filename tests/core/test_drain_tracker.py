"""DrainTracker: completion drain with an idle bound (protocol §9.9)."""

from __future__ import annotations

import pytest

from simtrio.core.drain import STALLED_MESSAGE, DrainTracker
from simtrio.errors import InvalidParams


def test_completes_when_every_terminal_arrived() -> None:
    drain = DrainTracker(["acc", "tx"], idle_timeout=60.0, now=100.0)
    assert drain.pending == frozenset({"acc", "tx"})
    assert not drain.is_complete
    assert drain.deadline == 160.0
    drain.terminal("acc")
    assert not drain.is_complete
    drain.terminal("tx")
    assert drain.is_complete
    assert not drain.is_stalled(10_000.0)


def test_no_subscriptions_is_complete_at_once() -> None:
    drain: DrainTracker[str] = DrainTracker([], idle_timeout=1.0, now=0.0)
    assert drain.is_complete
    assert not drain.is_stalled(5.0)


def test_notifications_reset_the_idle_deadline() -> None:
    drain = DrainTracker([1], idle_timeout=10.0, now=0.0)
    assert not drain.is_stalled(9.9)
    drain.notification(9.0)
    assert drain.deadline == 19.0
    assert not drain.is_stalled(18.9)
    assert drain.is_stalled(19.0)


def test_terminal_with_time_counts_as_activity() -> None:
    drain = DrainTracker(["a", "b"], idle_timeout=10.0, now=0.0)
    drain.terminal("a", now=8.0)
    assert drain.deadline == 18.0
    drain.terminal("zzz")  # unknown: ignored
    assert drain.pending == frozenset({"b"})
    assert drain.deadline == 18.0


def test_idle_timeout_can_change_mid_drain() -> None:
    drain = DrainTracker(["a"], idle_timeout=60.0, now=0.0)
    drain.set_idle_timeout(5.0)
    assert drain.idle_timeout == 5.0
    assert drain.is_stalled(5.0)
    with pytest.raises(InvalidParams):
        drain.set_idle_timeout(0)


def test_add_subscription() -> None:
    drain = DrainTracker(["a"], idle_timeout=1.0, now=0.0)
    drain.terminal("a")
    drain.add("a")  # already terminated: nothing to wait for
    assert drain.is_complete
    drain.add("b")
    assert drain.pending == frozenset({"b"})


def test_invalid_timeout() -> None:
    with pytest.raises(InvalidParams):
        DrainTracker(["a"], idle_timeout=-1.0, now=0.0)


def test_stalled_message_wording() -> None:
    assert STALLED_MESSAGE.startswith("completion drain stalled: ")
    assert STALLED_MESSAGE.endswith("the captured stream is incomplete")
