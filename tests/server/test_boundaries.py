"""The server's exception boundaries and its session-task host."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from simtrio.server.boundaries import map_exceptions
from simtrio.server.config import ServerConfig
from simtrio.server.state import ServerState

from .helpers import running_state


class _Mapped(Exception):
    pass


def test_a_listed_exception_becomes_the_servers_own_without_a_chain() -> None:
    mapper = map_exceptions((KeyError, ValueError), lambda exc: _Mapped(f"mapped: {exc}"))
    for foreign in (KeyError("k"), ValueError("v")):
        with pytest.raises(_Mapped) as info, mapper:
            raise foreign
        assert str(info.value).startswith("mapped: ")
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__


def test_other_exceptions_and_a_clean_block_pass_through() -> None:
    mapper = map_exceptions(ValueError, lambda _exc: _Mapped())
    with pytest.raises(TypeError), mapper:
        raise TypeError
    with mapper:
        pass


async def test_session_tasks_run_only_while_the_host_runs() -> None:
    state = ServerState(ServerConfig())
    with pytest.raises(RuntimeError):
        state.spawn(trio.sleep, 0)
    done: list[int] = []

    async def task(value: int) -> None:
        await trio.lowlevel.checkpoint()
        done.append(value)

    async with running_state(ServerConfig()) as running:
        running.spawn(task, 7)
        await trio.testing.wait_all_tasks_blocked()
    assert done == [7]
    with pytest.raises(RuntimeError):
        running.spawn(task, 8)
