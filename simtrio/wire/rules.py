"""Rules shared by every part of the wire: integer ranges and kind matching.

This module imports nothing, so the data classes, the codecs, the parameter builders and the
reference server can all take their limits from here.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import Final

U16_MAX: Final = 2**16 - 1
U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1
UINT_NAMES: Final = {U16_MAX: "u16", U32_MAX: "u32", U64_MAX: "u64"}
"""The Rust name of each unsigned upper bound, for messages."""


def kind_key(text: str) -> str:
    """Normalise a tag for kind matching: ``AdvanceSlotFailed`` == ``advance_slot_failed``."""
    return text.replace("_", "").replace("-", "").lower()
