"""The ``simtrio`` command line: run, serve, inspect and compare backtests."""
