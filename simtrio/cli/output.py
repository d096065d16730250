"""Tables and JSON lines for the commands' stdout (tables: :mod:`simtrio.cli.console`)."""

from __future__ import annotations

__all__: list[str] = []

from typing import Any, TextIO, cast

import orjson


def format_duration(seconds: float) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``: short enough for a table column."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def json_object(value: object) -> dict[str, Any] | None:
    """``value`` as a JSON object, or None when it is anything else."""
    if isinstance(value, dict):
        return cast("dict[str, Any]", value)
    return None


def dumps(value: object) -> str:
    """Compact JSON text; non-str keys are stringified rather than rejected."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def write_json(out: TextIO, value: object) -> None:
    """One JSON document on one line."""
    out.write(dumps(value) + "\n")
