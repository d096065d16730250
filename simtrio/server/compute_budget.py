"""The compute budget a transaction asks for, read from its Compute Budget instructions."""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Final

from solders.compute_budget import ID as COMPUTE_BUDGET_PROGRAM

if TYPE_CHECKING:
    from solders.message import Message, MessageV0, MessageV1

DEFAULT_INSTRUCTION_UNITS: Final = 200_000
"""Solana's compute-unit limit per instruction when a transaction asks for none."""
MAX_TRANSACTION_UNITS: Final = 1_400_000
"""The most compute units a transaction can ask for on Solana."""
_SET_UNIT_LIMIT: Final = 2
_REQUEST_HEAP_FRAME: Final = 1


def requested_budget(message: Message | MessageV0 | MessageV1) -> tuple[int, int | None]:
    """The compute-unit limit and heap size a transaction asks for (None: the default heap).

    Read from its Compute Budget instructions; without ``SetComputeUnitLimit`` the limit is
    Solana's default of 200,000 units per other instruction, at most 1,400,000.
    """
    keys = message.account_keys
    units: int | None = None
    heap: int | None = None
    others = 0
    for ix in message.instructions:
        index = ix.program_id_index
        data = bytes(ix.data)
        if index < len(keys) and keys[index] == COMPUTE_BUDGET_PROGRAM and len(data) >= 5:
            value = int.from_bytes(data[1:5], "little")
            if data[0] == _SET_UNIT_LIMIT:
                units = value
            elif data[0] == _REQUEST_HEAP_FRAME:
                heap = value
            continue
        others += 1
    if units is None:
        units = others * DEFAULT_INSTRUCTION_UNITS
    return min(units, MAX_TRANSACTION_UNITS), heap
