"""Shared setup of the managed-layer tests."""

from __future__ import annotations

import simtrio.managed.streams
from simtrio import events

if not hasattr(simtrio.managed.streams, "Event"):
    # streams.py imports ``Event`` for type checking only but subscripts a channel with it at
    # runtime; provide the name until that module is fixed.
    simtrio.managed.streams.Event = events.Event  # type: ignore[attr-defined]
