"""Errors of sweeps; every one is a :class:`~simtrio.errors.SimtrioError`."""

from __future__ import annotations

__all__: list[str] = []

from simtrio.errors import SimtrioError


class SweepError(SimtrioError):
    """A sweep cannot be run as asked (bad cells, bad spec, bad strategy result)."""


class NotShippable(SweepError):
    """The strategy, a cell's parameters or its create request cannot reach a worker process.

    The process and Ray executors pickle them: the strategy must be a module-level function of
    an importable module (or a ``"module:function"`` string), the parameters plain data.
    """


class ExecutorUnavailable(SweepError):
    """The executor cannot start here (Ray not installed, cluster unreachable)."""


class SweepBusy(SweepError):
    """Another process is running the same sweep against the same store right now."""
