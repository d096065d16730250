"""ManagedConfig defaults and validation, ConnectionStatus, SessionInfo (api.md §4)."""

from __future__ import annotations

import math
import ssl

import attrs
import pytest

from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import InvalidParams
from simtrio.managed.config import ConnectionStatus, ManagedConfig, SessionInfo


def test_defaults() -> None:
    config = ManagedConfig()
    assert config.connect_timeout == 30
    assert config.handshake_timeout == 60
    assert config.create_response_timeout == 900
    assert config.keepalive_interval == 15
    assert config.keepalive_miss_deadline == 45
    assert config.completion_drain_timeout == 60
    assert config.graceful_close_timeout == 5
    assert config.max_message_size == 64 * 1024 * 1024
    assert config.reconnect_max_total is None
    assert config.first_connect_max_total == 10
    assert config.idle_step_timeout == 300
    assert config.event_buffer == 1024
    assert config.backoff == BackoffPolicy()
    assert config.continue_channel_capacity == 256
    assert config.coordinator_fast_attempts == 3
    assert config.ssl_context is None
    assert config.rng_seed is None


@pytest.mark.parametrize(
    ("disconnect", "override", "expected"),
    [
        (None, None, 900.0),
        (0, None, 900.0),
        (120, None, 120.0),
        (120, 7.5, 7.5),
        (None, 3.0, 3.0),
    ],
)
def test_max_total_for(disconnect: int | None, override: float | None, expected: float) -> None:
    config = ManagedConfig(reconnect_max_total=override)
    assert config.max_total_for(disconnect) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_timeout": 0},
        {"handshake_timeout": -1},
        {"create_response_timeout": math.nan},
        {"keepalive_interval": 0.0},
        {"keepalive_miss_deadline": "45"},
        {"completion_drain_timeout": True},
        {"graceful_close_timeout": -5},
        {"max_message_size": 0},
        {"max_message_size": 1.5},
        {"reconnect_max_total": 0},
        {"first_connect_max_total": 0},
        {"first_connect_max_total": "10"},
        {"idle_step_timeout": -1},
        {"idle_step_timeout": True},
        {"event_buffer": 0},
        {"backoff": None},
        {"continue_channel_capacity": 0},
        {"coordinator_fast_attempts": -1},
        {"ssl_context": "yes"},
        {"rng_seed": "seed"},
    ],
)
def test_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParams):
        ManagedConfig(**kwargs)  # type: ignore[arg-type]


def test_first_connect_and_idle_step_can_be_turned_off() -> None:
    config = ManagedConfig(first_connect_max_total=None, idle_step_timeout=None)
    assert config.first_connect_max_total is None
    assert config.idle_step_timeout is None


def test_keyword_only_and_evolve() -> None:
    with pytest.raises(TypeError):
        ManagedConfig(1.0)  # type: ignore[call-arg]
    config = attrs.evolve(ManagedConfig(), graceful_close_timeout=1.0, coordinator_fast_attempts=0)
    assert config.graceful_close_timeout == 1.0
    assert config.coordinator_fast_attempts == 0


def test_ssl_context_not_in_repr_or_eq() -> None:
    context = ssl.create_default_context()
    config = ManagedConfig(ssl_context=context)
    assert config.ssl_context is context
    assert "ssl" not in repr(config)
    assert config == ManagedConfig()


def test_rng() -> None:
    seeded = ManagedConfig(rng_seed=7)
    assert seeded.make_rng().random() == seeded.make_rng().random()
    assert ManagedConfig().make_rng() is not ManagedConfig().make_rng()


def test_connection_status_and_session_info() -> None:
    assert [s.name for s in ConnectionStatus] == ["DOWN", "UP", "RECONNECTING", "FAILED"]
    info = SessionInfo("backtest_1", "ws://h/backtest/backtest_1", None)
    assert info.task_id is None
    assert SessionInfo("a", "b") == SessionInfo("a", "b", None)
