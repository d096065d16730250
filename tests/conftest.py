"""Suite-wide settings, and reference servers in memory for tests on the virtual clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.support.inmemory import reference_servers_in_memory

if TYPE_CHECKING:
    from collections.abc import Iterator

settings.register_profile(
    "simtrio",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("simtrio")

LOOPBACK_MARKER = "loopback"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{LOOPBACK_MARKER}: the reference servers of this test listen on 127.0.0.1 even on the"
        " virtual clock (the test is about real sockets)",
    )


@pytest.fixture(autouse=True)
def _reference_servers_in_memory(request: pytest.FixtureRequest) -> Iterator[None]:
    """On the virtual clock, reference servers serve in memory unless marked ``loopback``.

    With ``autojump_clock`` the clock jumps whenever every task waits, on a socket too, so a
    timeout could fire only because the kernel had not delivered some bytes yet. In memory
    there is nothing to wait for but other tasks. This is a plain fixture: it sets up before
    pytest-trio copies the context the test and its async fixtures run in.
    """
    on_virtual_clock = "autojump_clock" in request.fixturenames
    if not on_virtual_clock or request.node.get_closest_marker(LOOPBACK_MARKER) is not None:
        yield
        return
    with reference_servers_in_memory():
        yield
