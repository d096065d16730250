"""Errors of the recording layer.

They live here rather than in :mod:`simtrio.errors` so the recording package stays
self-contained; every one of them is a :class:`~simtrio.errors.SimtrioError`.
"""

from __future__ import annotations

__all__: list[str] = []

from simtrio.errors import SimtrioError


class RecordingError(SimtrioError):
    """Base class of the errors of run stores, recorders and replays."""


class StoreError(RecordingError):
    """A run store cannot be opened, read or written (missing, corrupt, newer schema, I/O)."""


class RunNotFound(StoreError):
    """No run with that id exists in the store."""


class RunUnusable(StoreError):
    """The run cannot serve as a parent or replay source (quarantined, or still recording)."""


class RecordingFailed(RecordingError):
    """The recorder could not make entries durable; the run is stopped, not silently truncated.

    ``durable`` is how many entries of the run are safely committed; ``unwritten`` how many
    entries were accepted by ``record_*`` calls but could not be written.
    """

    def __init__(self, message: str, *, durable: int = 0, unwritten: int = 0) -> None:
        super().__init__(message)
        self.durable = durable
        self.unwritten = unwritten


class RecordingClosed(RecordingError):
    """A ``record_*`` call was made after the recorder's block ended."""


class ReplayDivergence(RecordingError):
    """A replayed client sent a request the recording does not have at that step.

    ``step`` counts the session's requests from 1 (step 0 is the create); ``expected`` is
    the recorded request text (None when the recording has no such step) and ``received``
    the text the client sent.
    """

    def __init__(
        self,
        message: str,
        *,
        session_id: str | None,
        step: int,
        expected: str | None,
        received: str,
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.step = step
        self.expected = expected
        self.received = received
