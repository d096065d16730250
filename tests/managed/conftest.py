"""Shared setup of the managed-layer tests (scripted fakes live in ``fakes.py``)."""

from __future__ import annotations
