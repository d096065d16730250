"""Sans-IO state machines: everything the clients decide without a socket or a clock.

The trio layer feeds decoded inputs and the current time in and carries out the decisions that
come back. Nothing in this package imports trio.
"""

from __future__ import annotations

from simtrio.core.backoff import BackoffPolicy, ReconnectState
from simtrio.core.demux import (
    AllCompleted,
    ParallelAttached,
    ParallelCreated,
    ParallelDemux,
    SubSessionSpec,
)
from simtrio.core.drain import DrainTracker
from simtrio.core.session import (
    CloseDone,
    ContinueResult,
    Deliver,
    Fail,
    HandshakeDone,
    ManagedSessionCore,
    Phase,
    ReadinessTracker,
    ReadyOutcome,
    Retry,
    SequenceCursor,
    StepAccumulator,
)

__all__ = [
    "AllCompleted",
    "BackoffPolicy",
    "CloseDone",
    "ContinueResult",
    "Deliver",
    "DrainTracker",
    "Fail",
    "HandshakeDone",
    "ManagedSessionCore",
    "ParallelAttached",
    "ParallelCreated",
    "ParallelDemux",
    "Phase",
    "ReadinessTracker",
    "ReadyOutcome",
    "ReconnectState",
    "Retry",
    "SequenceCursor",
    "StepAccumulator",
    "SubSessionSpec",
]
