"""Throughput, latency and scale benchmarks of simtrio against in-run floors and peers.

Run with ``python -m benchmarks`` (``--quick`` for a smoke run); nothing here is asserted in the
test suite.
"""
