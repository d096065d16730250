"""Discovery announcements: the next batch a session's ``ProgramExecuted`` filters match.

When a session becomes ready it scans the synthetic chain ahead of its position for a batch
that involves a program one of its filters names, and announces it after its readiness. The
scan is bounded per announcement and yields between slots so a long one keeps the server
responsive.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
from typing import TYPE_CHECKING, TypeAlias

import trio

from simtrio.server import chain
from simtrio.wire.types import DiscoveryBatchEvent, DiscoveryFilter, EncodedBinary, ProgramExecuted

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

DISCOVERY_SCAN_SLOTS = 10_000
"""How far ahead one discovery announcement looks for a matching batch."""
SCAN_CHECKPOINT_SLOTS = 32
"""Slots a discovery scan looks at between two checkpoints (about 10 ms of work)."""

Position: TypeAlias = tuple[int, int]
"""(slot, batch index): the next batch a session will execute."""


def position_after(position: Position, batches: int) -> Position:
    """The batch right after ``position`` in a chain of ``batches`` batches per slot."""
    slot, batch = position
    return (slot, batch + 1) if batch + 1 < batches else (slot + 1, 0)


def unique_filters(filters: Iterable[DiscoveryFilter]) -> list[DiscoveryFilter]:
    """``filters`` in order, each once."""
    out: list[DiscoveryFilter] = []
    for f in filters:
        if f not in out:
            out.append(f)
    return out


class DiscoveryScan:
    """What one session's filters look for on the chain, and the search for it."""

    def __init__(
        self,
        cfg: chain.ChainConfig,
        filters: list[DiscoveryFilter],
        signer_filter: frozenset[str],
    ) -> None:
        self._cfg = cfg
        self.filters = filters
        self._signer_filter = signer_filter

    @property
    def programs(self) -> set[str]:
        """The chain's programs some ``ProgramExecuted`` filter names."""
        return {f.program_id for f in self.filters if isinstance(f, ProgramExecuted)} & set(
            self._cfg.program_ids
        )

    async def next_match(
        self,
        start: Position,
        end_slot: int,
        announced: Position | None,
        between_checkpoints: Callable[[], None],
    ) -> DiscoveryBatchEvent | None:
        """The next matching batch from ``start`` (past ``announced``), at most
        ``DISCOVERY_SCAN_SLOTS`` ahead and not past ``end_slot``.

        A checkpoint every ``SCAN_CHECKPOINT_SLOTS`` slots keeps the server (and Ctrl-C)
        responsive during a long scan; ``between_checkpoints`` runs after each one (it raises
        to end the scan).
        """
        if not self.programs:
            return None
        cfg = self._cfg
        if announced is not None and announced >= start:
            start = position_after(announced, cfg.batches_per_slot)
        slot, first_batch = start
        # Bounded per announcement; a later readiness resumes the scan from further on.
        last = min(end_slot, start[0] + DISCOVERY_SCAN_SLOTS - 1)
        scanned = 0
        while slot <= last:
            if scanned and scanned % SCAN_CHECKPOINT_SLOTS == 0:
                await trio.lowlevel.checkpoint()
                between_checkpoints()
            found = self._match_in(slot, first_batch)
            if found is not None:
                return found
            slot += 1
            first_batch = 0
            scanned += 1
        return None

    def _match_in(self, slot: int, first_batch: int) -> DiscoveryBatchEvent | None:
        """The first batch of ``slot`` from ``first_batch`` on that a filter matches."""
        cfg = self._cfg
        for batch in range(first_batch, cfg.batches_per_slot):
            txs = [
                tx
                for tx in chain.batch_transactions(cfg, slot, batch)
                if tx.fee_payer not in self._signer_filter
            ]
            involved = {p for tx in txs for p in tx.program_ids}
            matched: list[DiscoveryFilter] = [
                f
                for f in self.filters
                if isinstance(f, ProgramExecuted) and f.program_id in involved
            ]
            if matched:
                encoded = [
                    EncodedBinary(
                        base64.b64encode(chain.serialize_transaction(cfg, tx)).decode("ascii")
                    )
                    for tx in txs
                ]
                return DiscoveryBatchEvent(slot, batch, matched, encoded)
        return None
