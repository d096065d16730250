"""The data-plane barrier's rules, without sockets (simtrio.core.barrier)."""

from __future__ import annotations

import math

import pytest

from simtrio.core.barrier import (
    PingWatch,
    Proofs,
    gap_between,
    lags_behind,
    probe_due,
    probe_payload,
    probe_slot,
)
from simtrio.errors import InvalidParams
from simtrio.managed.config import ManagedConfig


def test_probe_payload_round_trips_and_other_pongs_prove_nothing() -> None:
    assert probe_slot(probe_payload(4321)) == 4321
    assert len(probe_payload(2**63 - 1)) <= 125
    for other in (b"", b"slot:", b"slot:12a", b"slot:" + b"9" * 21, b"4321", b"keepalive"):
        assert probe_slot(other) is None


def test_a_continue_waits_only_past_the_window() -> None:
    assert not lags_behind(1050, 1000, 50)
    assert lags_behind(1051, 1000, 50)
    assert not lags_behind(None, 1000, 50)
    assert not lags_behind(1051, None, 50)


def test_probes_go_out_every_half_window() -> None:
    assert probe_due(1000, None, 50)
    assert not probe_due(None, 1000, 50)
    assert not probe_due(1024, 1000, 50)
    assert probe_due(1025, 1000, 50)
    assert probe_due(1001, 1000, 1)


def test_gap_when_the_needed_slot_left_the_retention() -> None:
    assert not gap_between(1099, 1000, 100)
    assert gap_between(1100, 1000, 100)
    assert not gap_between(None, 1000, 100)
    assert not gap_between(1100, None, 100)


def test_ping_watch_overdue_only_without_inbound_bytes() -> None:
    watch = PingWatch(10.0)
    assert not watch.overdue(100.0, 0.0, 0.0)  # nothing sent
    watch.sent(100.0)
    watch.sent(105.0)  # the oldest unanswered ping counts
    assert watch.deadline(0.0) == 110.0
    assert not watch.overdue(109.9, 50.0, 0.0)
    assert watch.overdue(110.0, 50.0, 0.0)
    # Waiting for the consumer until 108 pushes the deadline.
    assert not watch.overdue(110.0, 50.0, 108.0)
    assert watch.overdue(118.0, 50.0, 108.0)
    # Anything received after the ping answers it.
    assert not watch.overdue(200.0, 100.5, 0.0)
    assert watch.waiting_since is None


def test_config_window_must_stay_inside_the_retention() -> None:
    assert ManagedConfig().data_lag_window < ManagedConfig().server_retained_slots
    with pytest.raises(InvalidParams, match="data_lag_window"):
        ManagedConfig(data_lag_window=100)
    with pytest.raises(InvalidParams):
        ManagedConfig(data_pong_timeout=0)
    with pytest.raises(InvalidParams):
        ManagedConfig(standalone_probe_interval=0)


def test_a_probe_answer_is_a_claim_until_the_next_one_confirms_it() -> None:
    proofs = Proofs()
    assert not proofs.answered(1050)
    assert proofs.proven is None  # a Pong alone may have overtaken a backlog
    assert proofs.claim == 1050
    assert proofs.ceiling == 1050
    assert proofs.answered(1060)  # sent after the first Pong arrived: confirms it
    assert (proofs.proven, proofs.claim) == (1050, 1060)
    assert proofs.answered(1060)  # the same slot again (the session did not move): confirmed
    assert (proofs.proven, proofs.claim) == (1060, 1060)
    assert not proofs.answered(1060)  # nothing new


def test_an_older_notification_withdraws_the_claim() -> None:
    proofs = Proofs()
    proofs.answered(1050)
    assert not proofs.withdraw(1020)  # the Pong was early; nothing proven to lower
    assert proofs.claim is None
    assert proofs.ceiling == -math.inf
    assert not proofs.answered(1070)  # nothing left to confirm
    assert proofs.proven is None
    assert proofs.answered(1080)
    assert proofs.proven == 1070


def test_a_claim_of_a_lost_connection_is_never_confirmed() -> None:
    proofs = Proofs()
    proofs.answered(1040)
    assert proofs.answered(1050)
    proofs.connection_changed()  # 1050 was only claimed, on the old connection
    assert (proofs.proven, proofs.claim, proofs.ceiling) == (1040, None, 1040)
    assert not proofs.answered(1090)  # the first claim on the new connection
    assert proofs.proven == 1040
