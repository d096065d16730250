"""The version of this simtrio package."""

from __future__ import annotations

__all__: list[str] = []

__version__ = "0.1.0"
"""simtrio's version, as in the package metadata."""
