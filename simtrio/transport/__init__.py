"""simtrio's own WebSocket client transport: a sans-IO engine and a thin trio shell.

The reader loop belongs to the caller (no background task), messages come in batches of one
socket read, and every failure maps onto :mod:`simtrio.errors` at one boundary
(:mod:`simtrio.transport.boundary`).

Modules: ``events`` (what the engine reports), ``endpoint`` (URLs and headers), ``handshake``
(the upgrade on h11), ``frames`` and ``wsproto_reader`` (the two frame readers), ``engine``
(the sans-IO connection), ``streams`` (TCP/TLS and the stream-opener seam), ``connection``
(the trio shell), ``http`` (plain GET/POST).
"""

from __future__ import annotations

__all__: list[str] = []
