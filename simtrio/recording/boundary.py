"""Where the store's foreign errors become simtrio's: sqlite3 and OS errors to ``StoreError``.

Every blocking call into SQLite or the file system in the run store (and in the sweep ledger
that shares its file) runs inside :func:`store_errors`, so no ``sqlite3.Error`` or ``OSError``
reaches a caller, and every message says what was being done.
"""

from __future__ import annotations

__all__: list[str] = []

import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING

from simtrio.recording.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Generator


@contextmanager
def store_errors(doing: str) -> Generator[None]:
    """Raise ``StoreError("<doing>: <error>")`` for a sqlite3 or OS error of the block.

    Simtrio's own errors (a ``StoreError`` raised inside, say) pass through unchanged.
    """
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"{doing}: {exc}") from None
