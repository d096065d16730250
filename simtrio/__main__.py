"""``python -m simtrio`` runs the command line."""

from __future__ import annotations

__all__: list[str] = []

from simtrio.cli.main import entry

if __name__ == "__main__":
    entry()
