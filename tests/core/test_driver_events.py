"""Driver events are frozen, comparable and pattern-matchable (api.md §4)."""

from __future__ import annotations

import typing

import attrs
import pytest

from simtrio import events, wire
from simtrio.wire import rpc


def describe(event: events.Event) -> str:
    match event:
        case events.ReadyForContinue():
            return "ready"
        case events.Slot(slot):
            return f"slot {slot}"
        case events.Status(status):
            return f"status {status}"
        case events.Paused(paused):
            return f"paused {paused.slot}"
        case events.DiscoveryBatch(batch):
            return f"batch {batch.batch_index}"
        case events.ErrorEvent(error):
            return f"error {error.kind}"
        case events.Completed(summary, agent_stats):
            return f"completed {summary} {agent_stats}"
        case events.Transaction(notification):
            return f"tx {notification.context.slot}"
        case events.AccountDiff(notification):
            return f"diff {notification.context.slot} {notification.account}"


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (events.ReadyForContinue(), "ready"),
        (events.Slot(7), "slot 7"),
        (events.Status(wire.BacktestStatus("newPhase")), "status newPhase"),
        (events.Paused(wire.PausedEvent(3, 1)), "paused 3"),
        (events.DiscoveryBatch(wire.DiscoveryBatchEvent(3, 2)), "batch 2"),
        (events.ErrorEvent(wire.NoMoreBlocks()), "error NoMoreBlocks"),
        (events.Completed(), "completed None None"),
        (events.Transaction(rpc.TransactionNotification(1, 44, {})), "tx 44"),
        (
            events.AccountDiff(rpc.AccountDiffNotification(1, 45, account="Acc")),
            "diff 45 Acc",
        ),
    ],
)
def test_match(event: events.Event, text: str) -> None:
    assert describe(event) == text


def test_frozen_and_equal() -> None:
    slot = events.Slot(1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        slot.slot = 2  # type: ignore[misc]
    assert slot == events.Slot(1)
    assert hash(slot) == hash(events.Slot(1))
    assert events.ReadyForContinue() == events.ReadyForContinue()
    assert events.Completed().summary is None


def test_match_args() -> None:
    assert events.Slot.__match_args__ == ("slot",)
    assert events.Completed.__match_args__ == ("summary", "agent_stats")
    assert events.AccountDiff.__match_args__ == ("notification",)
    assert events.ReadyForContinue.__match_args__ == ()


def test_union_covers_every_event_class() -> None:
    classes = {
        cls
        for cls in vars(events).values()
        if isinstance(cls, type) and attrs.has(cls) and cls.__module__ == events.__name__
    }
    assert classes == set(typing.get_args(events.Event))
    assert set(events.__all__) == {c.__name__ for c in classes} | {"Event"}


def test_type_hints_resolve() -> None:
    for cls in typing.get_args(events.Event):
        typing.get_type_hints(cls)
