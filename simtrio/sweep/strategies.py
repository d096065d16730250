"""Built-in strategies; :func:`stepping` is the default of ``simtrio sweep``.

``stepping`` is what ``simtrio run`` does to a backtest: answer every readiness with
``Continue(step)`` until the session completes, counting slots, transactions and account diffs
(each counted once, as the run summary does). Parameters it reads:

* ``step`` (int, default 1): slots per ``continue``;
* ``subscribe`` (list of ``"transactions"`` / ``"account-diffs"``, default none);
* ``program_ids`` (list of program ids the subscriptions watch).

A session that ends with an error fails the cell.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Any, Protocol, cast

import attrs
import trio

from simtrio import events
from simtrio.params import Continue
from simtrio.sweep.errors import SweepError
from simtrio.wire.transaction import transaction_outcome
from simtrio.wire.types import SessionSummary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from simtrio.managed.config import SessionInfo
    from simtrio.wire.jsontext import JsonValue


class _Driven(Protocol):
    @property
    def session_info(self) -> SessionInfo: ...

    def subscribe_transactions(self, program_ids: Sequence[str]) -> None: ...

    def subscribe_account_diffs(self, program_ids: Sequence[str]) -> None: ...

    def events(self) -> AsyncIterator[events.Event]: ...

    async def send_continue(self, cont: Continue) -> None: ...


def _strings(params: dict[str, JsonValue], name: str) -> list[str]:
    value = params.get(name, [])
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise SweepError(f"parameter {name!r} must be a list of strings")
    out: list[str] = []
    for item in cast("list[object]", value):
        if not isinstance(item, str):
            raise SweepError(f"parameter {name!r} must be a list of strings")
        out.append(item)
    return out


@attrs.define
class _Tally:
    """What one (sub-)session saw: each transaction once per signature, each diff once."""

    session_id: str
    signatures: set[str] = attrs.field(factory=set[str])
    unsigned: int = 0
    failed: int = 0
    diffs: set[tuple[str | None, str | None, int]] = attrs.field(
        factory=set[tuple[str | None, str | None, int]]
    )
    summary: SessionSummary | None = None
    completed: bool = False

    def transaction(self, payload: JsonValue) -> None:
        signature, err = transaction_outcome(payload)
        if signature is None:
            self.unsigned += 1
        elif signature in self.signatures:
            return  # notified again (two subscribed programs, or a replayed boundary slot)
        else:
            self.signatures.add(signature)
        if err is not None:
            self.failed += 1


async def _drive(session: _Driven, tally: _Tally, slots: set[int], cont: Continue) -> None:
    async for event in session.events():
        match event:
            case events.ReadyForContinue() | events.Paused():
                await session.send_continue(cont)
            case events.Slot(slot=slot):
                slots.add(slot)
            case events.Transaction():
                tally.transaction(event.notification.transaction)
            case events.AccountDiff():
                n = event.notification
                tally.diffs.add((n.signature, n.account, n.slot))
            case events.ErrorEvent(error=error):
                raise SweepError(f"session {tally.session_id} failed: {error}")
            case events.Completed(summary=summary):
                tally.summary = summary
                tally.completed = True
            case _:
                pass
    if not tally.completed:
        raise SweepError(f"session {tally.session_id} ended before it completed")


async def stepping(session: Any, params: dict[str, JsonValue]) -> JsonValue:
    """Step a managed or parallel session to completion; returns the run's counts."""
    step = params.get("step", 1)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise SweepError("parameter 'step' must be an integer >= 1")
    kinds = _strings(params, "subscribe")
    program_ids = _strings(params, "program_ids")
    unknown = set(kinds) - {"transactions", "account-diffs"}
    if unknown:
        raise SweepError(f"unknown subscription kinds: {', '.join(sorted(unknown))}")
    if kinds and not program_ids:
        raise SweepError("parameter 'subscribe' needs 'program_ids'")
    driven: list[_Driven] = (
        list(session.take_sub_sessions()) if hasattr(session, "take_sub_sessions") else [session]
    )
    tallies: list[_Tally] = []
    slots: set[int] = set()
    for sub in driven:
        tallies.append(_Tally(sub.session_info.session_id))
        if "transactions" in kinds:
            sub.subscribe_transactions(program_ids)
        if "account-diffs" in kinds:
            sub.subscribe_account_diffs(program_ids)
    cont = Continue(step)
    async with trio.open_nursery() as nursery:
        for sub, tally in zip(driven, tallies, strict=True):
            nursery.start_soon(_drive, sub, tally, slots, cont)
    return {
        "sessions": len(tallies),
        "slots": len(slots),
        "transactions": sum(len(t.signatures) + t.unsigned for t in tallies),
        "failed_transactions": sum(t.failed for t in tallies),
        "account_diffs": sum(len(t.diffs) for t in tallies),
        "correct": sum(t.summary.correct_simulation for t in tallies if t.summary),
        "incorrect": sum(t.summary.incorrect_simulation for t in tallies if t.summary),
    }
