"""The TOML file ``simtrio sweep`` reads: ranges, a parameter grid, the strategy.

::

    name = "step-grid"                          # required: resume goes by it
    strategy = "mypackage.strategies:momentum"  # default: the stepping driver of simtrio run
    retries = 1                                 # extra attempts of a failed cell (default 0)
    ranges = [[0, 99], [100, 199]]              # inclusive slot ranges, one cell set each

    [server]                                    # optional
    url = "wss://simulator.example/backtest"    # default: --url, $SIMULATOR_URL, else embedded
    seed = 7                                    # embedded server only
    slot_delay = 0.0                            # embedded server only

    [create]                                    # options of every cell's create request
    parallel = false
    send_summary = true
    disconnect_timeout_secs = 60

    [params]                                    # the same in every cell
    subscribe = ["transactions"]

    [grid]                                      # every combination is a cell
    step = [1, 5]

A spec never holds the API key: one named like a key is refused (it comes from
``SIMULATOR_API_KEY`` or ``--api-key``).
"""

from __future__ import annotations

__all__: list[str] = []

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

import attrs

from simtrio.errors import InvalidParams
from simtrio.params import CreateSession
from simtrio.sweep.errors import SweepError
from simtrio.sweep.plan import Cell, expand_grid
from simtrio.wire.jsontext import JsonValue

_TOP: Final = frozenset(
    {"name", "strategy", "retries", "ranges", "server", "create", "params", "grid"}
)
_SERVER: Final = frozenset({"url", "seed", "slot_delay"})
_CREATE: Final = frozenset(
    {
        "parallel",
        "send_summary",
        "disconnect_timeout_secs",
        "capacity_wait_timeout_secs",
        "extra_compute_units",
        "signer_filter",
    }
)
_SECRET_WORDS: Final = ("apikey", "api_key", "api-key", "password", "secret", "token")


@attrs.frozen
class SweepSpec:
    """A parsed sweep file."""

    name: str
    ranges: tuple[tuple[int, int], ...]
    strategy: str | None = None
    retries: int = 0
    url: str | None = None
    seed: int = 0
    slot_delay: float = 0.0
    create: Mapping[str, Any] = attrs.field(factory=dict[str, Any])
    params: Mapping[str, JsonValue] = attrs.field(factory=dict[str, JsonValue])
    grid: Mapping[str, list[JsonValue]] = attrs.field(factory=dict[str, list[JsonValue]])

    def creates(self) -> list[CreateSession]:
        try:
            return [CreateSession(s, end_slot=e, **self.create) for s, e in self.ranges]
        except (InvalidParams, TypeError) as exc:
            raise SweepError(f"[create]: {exc}") from None

    def cells(self, extra_params: Mapping[str, JsonValue] | None = None) -> list[Cell]:
        """Every range times every grid combination; ``extra_params`` add fixed parameters."""
        return expand_grid(self.creates(), self.grid, {**(extra_params or {}), **self.params})

    def combinations(self) -> int:
        count = 1
        for values in self.grid.values():
            count *= len(values)
        return count

    def describe(self) -> str:
        """A one-line echo of the spec (it holds no credential)."""
        grid = " x ".join(f"{name}[{len(v)}]" for name, v in sorted(self.grid.items()))
        shape = f"{len(self.ranges)} range(s)" + (f" x {grid}" if grid else "")
        cells = len(self.ranges) * self.combinations()
        return f"sweep {self.name!r}: {cells} cells ({shape}), retries {self.retries}"


def _table(doc: Mapping[str, Any], key: str, allowed: frozenset[str] | None) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise SweepError(f"[{key}] must be a table")
    table = cast("dict[str, Any]", value)
    if allowed is not None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise SweepError(f"[{key}]: unknown key(s) {', '.join(unknown)}")
    return table


def _find_secret(value: object, where: str) -> str | None:
    if isinstance(value, dict):
        for key, inner in cast("dict[str, object]", value).items():
            lowered = key.lower()
            if any(word in lowered for word in _SECRET_WORDS):
                return f"{where}{key}"
            found = _find_secret(inner, f"{where}{key}.")
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in cast("list[object]", value):
            found = _find_secret(inner, where)
            if found is not None:
                return found
    return None


def _int(value: object, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SweepError(f"{what} must be an integer >= {minimum}")
    return value


def _ranges(value: object) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not value:
        raise SweepError("ranges must be a non-empty list of [start, end] pairs")
    out: list[tuple[int, int]] = []
    for item in cast("list[object]", value):
        if isinstance(item, dict):
            table = cast("dict[str, object]", item)
            start = _int(table.get("start_slot"), "ranges: start_slot")
            if "slot_count" in table:
                end = start + _int(table.get("slot_count"), "ranges: slot_count")
            else:
                end = _int(table.get("end_slot"), "ranges: end_slot")
        elif isinstance(item, list) and len(cast("list[object]", item)) == 2:
            pair = cast("list[object]", item)
            start, end = _int(pair[0], "ranges: start"), _int(pair[1], "ranges: end")
        else:
            raise SweepError("each range is [start, end] or a table with start_slot and end_slot")
        if end < start:
            raise SweepError(f"range [{start}, {end}] ends before it starts")
        out.append((start, end))
    return tuple(out)


def parse_spec(text: str, source: str = "<spec>") -> SweepSpec:
    """Parse a sweep file's text.

    Raises:
        SweepError: not TOML, or not a valid sweep (the message names the problem).
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{source}: not valid TOML ({exc})") from None
    secret = _find_secret(doc, "")
    if secret is not None:
        raise SweepError(
            f"{source}: {secret!r} looks like a credential; a sweep file never holds the API "
            "key (set SIMULATOR_API_KEY or pass --api-key)"
        )
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise SweepError(f"{source}: unknown key(s) {', '.join(unknown)}")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SweepError(f"{source}: 'name' must be a non-empty string")
    strategy = doc.get("strategy")
    if strategy is not None and (not isinstance(strategy, str) or ":" not in strategy):
        raise SweepError(f"{source}: 'strategy' must be 'module:function'")
    server = _table(doc, "server", _SERVER)
    url = server.get("url")
    if url is not None and (not isinstance(url, str) or not url.strip()):
        raise SweepError(f"{source}: [server] url must be a non-empty string")
    slot_delay = server.get("slot_delay", 0.0)
    if not isinstance(slot_delay, int | float) or isinstance(slot_delay, bool) or slot_delay < 0:
        raise SweepError(f"{source}: [server] slot_delay must be a number >= 0")
    grid = _table(doc, "grid", None)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{source}: [grid] {key} must be a non-empty list")
    try:
        spec = SweepSpec(
            name=name.strip(),
            ranges=_ranges(doc.get("ranges")),
            strategy=strategy,
            retries=_int(doc.get("retries", 0), "retries"),
            url=url,
            seed=_int(server.get("seed", 0), "[server] seed"),
            slot_delay=float(slot_delay),
            create=_table(doc, "create", _CREATE),
            params=_table(doc, "params", None),
            grid=grid,
        )
    except SweepError as exc:
        raise SweepError(f"{source}: {exc}") from None
    spec.creates()  # the create options are checked now, not when the first cell runs
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    """Read and parse a sweep file.

    Raises:
        SweepError: it cannot be read or is not a valid sweep.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"cannot read {str(file)!r}: {exc}") from None
    return parse_spec(text, str(file))
