"""Where the golden vectors live: one rule for every test that reads them.

The repository vendors a copy in ``tests/vectors``; ``SIMTRIO_VECTORS`` points elsewhere, and
without a vendored copy the spec checked out beside the repository (``../shared/spec/vectors``)
is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SHARED_VECTORS", "VENDORED_VECTORS", "load_vectors", "vectors_dir"]

_REPO = Path(__file__).resolve().parents[2]
VENDORED_VECTORS = _REPO / "tests" / "vectors"
SHARED_VECTORS = _REPO.parent / "shared" / "spec" / "vectors"


def vectors_dir() -> Path:
    override = os.environ.get("SIMTRIO_VECTORS")
    if override:
        return Path(override)
    return VENDORED_VECTORS if (VENDORED_VECTORS / "rpc.json").is_file() else SHARED_VECTORS


def load_vectors(name: str) -> list[dict[str, Any]]:
    """The entries of one vector file (``encode.json``, ``decode.json``, ``rpc.json``)."""
    entries: list[dict[str, Any]] = orjson.loads((vectors_dir() / name).read_bytes())
    return entries
