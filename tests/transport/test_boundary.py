"""map_exceptions, shared by every boundary, and the transport's reason(): what crosses, how."""

from __future__ import annotations

import pytest
import trio

from simtrio.core.boundary import map_exceptions
from simtrio.errors import ConnectError
from simtrio.transport.boundary import reason


def test_a_listed_exception_becomes_the_converted_one_chained_to_it() -> None:
    with (
        pytest.raises(ConnectError, match="lost: boom") as info,
        map_exceptions(OSError, lambda exc: ConnectError(f"lost: {exc}")),
    ):
        raise ConnectionResetError("boom")
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_chain_false_hides_the_original() -> None:
    with (
        pytest.raises(ConnectError) as info,
        map_exceptions(ValueError, lambda _: ConnectError("bad"), chain=False),
    ):
        raise ValueError("secret-value")
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_other_exceptions_and_success_pass_through() -> None:
    guard = map_exceptions(OSError, lambda _: ConnectError("never"))
    with guard:
        pass
    with pytest.raises(KeyError), guard:
        raise KeyError("x")
    with pytest.raises(ConnectError), guard:  # one instance serves again and again
        raise OSError("again")


async def test_cancellation_is_never_mapped() -> None:
    with (
        trio.CancelScope() as scope,
        map_exceptions(Exception, lambda _: ConnectError("never")),
    ):
        scope.cancel()
        await trio.sleep(1)
    assert scope.cancelled_caught


def test_reason_prefers_strerror_then_text_then_type() -> None:
    assert reason(OSError(111, "Connection refused")) == "Connection refused"
    assert reason(RuntimeError("text")) == "text"
    assert reason(RuntimeError()) == "RuntimeError"
