"""Helpers for testing code that uses simtrio: fixtures and a pytest plugin.

Installing simtrio registers :mod:`simtrio.testing.plugin` with pytest, so its fixtures need
no import; they are re-exported here so that the reference and type checkers can name them.
"""

from __future__ import annotations

__all__ = ["simtrio_replay", "simtrio_server"]

from simtrio.testing.plugin import simtrio_replay, simtrio_server
