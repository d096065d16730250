"""The ``simtrio`` command line: run, serve, inspect and compare backtests."""

__all__: list[str] = []
