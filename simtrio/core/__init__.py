"""Sans-IO state machines: everything the clients decide without a socket or a clock.

The trio layer feeds decoded inputs and the current time in and carries out the decisions that
come back. Nothing in this package imports trio.
"""

from __future__ import annotations

__all__: list[str] = []
