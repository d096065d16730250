"""Cells, their keys, and what a (re-)run of a sweep has to do: plain data, no I/O.

A cell is a create request plus the user's parameters; its key names it within the sweep and
is what resume goes by. The outcome table is built from the ledger rows of the store.
"""

from __future__ import annotations

__all__: list[str] = []

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import attrs
import orjson

from simtrio.params import CreateSession
from simtrio.sweep.errors import SweepError
from simtrio.wire.jsontext import JsonValue


class Outcome:
    """How an attempt at a cell ended (the ledger's ``outcome`` column)."""

    OK: Final = "ok"
    FAILED: Final = "failed"
    """The strategy (or the session) raised; the run is recorded with the error."""
    CRASHED: Final = "crashed"
    """The worker died or was lost; what it recorded is kept if it could be."""
    QUARANTINED: Final = "quarantined"
    """The worker's run failed verification on import and was not merged."""
    PENDING: Final = "pending"
    """Not attempted yet (only in tables, never in the ledger)."""


OK: Final = Outcome.OK


def _json_text(value: object) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError as exc:
        raise SweepError(f"cell parameters must be JSON data: {exc}") from None


def cell_key(create: CreateSession, params: Mapping[str, JsonValue]) -> str:
    """``start-end`` plus ``/name=value,...`` for the parameters, sorted by name."""
    key = f"{create.start_slot}-{create.end_slot}"
    if params:
        key += "/" + ",".join(f"{name}={_json_text(params[name])}" for name in sorted(params))
    return key


def _params(value: Mapping[str, JsonValue]) -> Mapping[str, JsonValue]:
    return dict(value)


@attrs.frozen
class Cell:
    """One backtest of a sweep: what to create and the parameters the strategy gets."""

    create: CreateSession
    params: Mapping[str, JsonValue] = attrs.field(factory=dict[str, JsonValue], converter=_params)
    key: str = attrs.field(default="")
    """Unique within the sweep; derived from the range and parameters when not given."""

    def __attrs_post_init__(self) -> None:
        _json_text(self.params)
        if not self.key:
            object.__setattr__(self, "key", cell_key(self.create, self.params))


def expand_grid(
    creates: Sequence[CreateSession],
    grid: Mapping[str, Sequence[JsonValue]] | None = None,
    fixed: Mapping[str, JsonValue] | None = None,
) -> list[Cell]:
    """Every create request times every combination of the grid's values.

    The key of a cell names its range and grid values; ``fixed`` parameters, the same in every
    cell, are passed to the strategy but left out of the key.
    """
    grid = grid or {}
    for name, values in grid.items():
        if isinstance(values, str | bytes) or not values:
            raise SweepError(f"grid parameter {name!r} needs a non-empty list of values")
    names = sorted(grid)
    cells: list[Cell] = []
    for create in creates:
        for combo in itertools.product(*(grid[name] for name in names)):
            chosen = dict(zip(names, combo, strict=True))
            cells.append(Cell(create, {**(fixed or {}), **chosen}, key=cell_key(create, chosen)))
    return cells


def check_cells(cells: Sequence[Cell]) -> None:
    """Raises :class:`SweepError` for an empty sweep or a key used twice."""
    if not cells:
        raise SweepError("a sweep needs at least one cell")
    seen: set[str] = set()
    for cell in cells:
        if cell.key in seen:
            raise SweepError(f"two cells have the key {cell.key!r}")
        seen.add(cell.key)


@attrs.frozen
class CellAttempt:
    """One ledger row: an attempt at a cell and how it ended."""

    sweep: str
    key: str
    attempt: int
    outcome: str
    run_id: str | None
    start_slot: int
    end_slot: int
    params: JsonValue
    result: JsonValue
    error: str | None
    started_at_ns: int
    duration: float
    executor: str


@attrs.frozen
class CellOutcome:
    """Where one cell of a sweep stands: its best attempt (a success, else the latest)."""

    key: str
    start_slot: int
    end_slot: int
    params: JsonValue
    outcome: str
    attempts: int
    run_id: str | None = None
    result: JsonValue = None
    error: str | None = None
    duration: float | None = None
    executor: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "start_slot": self.start_slot,
            "end_slot": self.end_slot,
            "params": self.params,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "run_id": self.run_id,
            "result": self.result,
            "error": self.error,
            "duration": None if self.duration is None else round(self.duration, 6),
            "executor": self.executor,
        }


def _best(rows: Sequence[CellAttempt]) -> CellAttempt:
    for row in rows:
        if row.outcome == OK:
            return row
    return max(rows, key=lambda r: r.attempt)


@attrs.frozen
class SweepTable:
    """The outcome of every cell of a sweep, in cell order."""

    name: str
    cells: tuple[CellOutcome, ...]

    @classmethod
    def build(
        cls, name: str, rows: Sequence[CellAttempt], cells: Sequence[Cell] | None = None
    ) -> SweepTable:
        """From ledger rows; ``cells`` (when given) fixes the order and adds pending cells."""
        by_key: dict[str, list[CellAttempt]] = {}
        for row in rows:
            by_key.setdefault(row.key, []).append(row)
        keys = [c.key for c in cells] if cells is not None else sorted(by_key)
        wanted = {c.key: c for c in cells or ()}
        out: list[CellOutcome] = []
        for key in keys:
            attempts = by_key.get(key)
            if not attempts:
                cell = wanted[key]
                out.append(
                    CellOutcome(
                        key,
                        cell.create.start_slot,
                        cell.create.end_slot,
                        dict(cell.params),
                        Outcome.PENDING,
                        0,
                    )
                )
                continue
            best = _best(attempts)
            out.append(
                CellOutcome(
                    key=key,
                    start_slot=best.start_slot,
                    end_slot=best.end_slot,
                    params=best.params,
                    outcome=best.outcome,
                    attempts=len(attempts),
                    run_id=best.run_id,
                    result=best.result,
                    error=best.error,
                    duration=best.duration,
                    executor=best.executor,
                )
            )
        return cls(name, tuple(out))

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cells if c.outcome == outcome)

    @property
    def all_ok(self) -> bool:
        return all(c.outcome == OK for c in self.cells)

    def by_key(self) -> dict[str, CellOutcome]:
        return {c.key: c for c in self.cells}

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": self.name,
            "cells": [c.to_json() for c in self.cells],
            "counts": {
                outcome: self.count(outcome)
                for outcome in (
                    Outcome.OK,
                    Outcome.FAILED,
                    Outcome.CRASHED,
                    Outcome.QUARANTINED,
                    Outcome.PENDING,
                )
            },
        }


def key_fields(result: JsonValue, limit: int = 4) -> list[tuple[str, JsonValue]]:
    """The first ``limit`` scalar top-level fields of a result object (for one-line reports)."""
    if not isinstance(result, dict):
        return [] if result is None else [("result", result)]
    fields: list[tuple[str, JsonValue]] = []
    obj = cast("dict[str, JsonValue]", result)
    for name, value in obj.items():
        if isinstance(value, int | float | str | bool):
            fields.append((name, value))
            if len(fields) == limit:
                break
    return fields
