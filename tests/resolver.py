"""A hostname resolver for tests: every name is unknown, as DNS says for a name that does not exist."""

from __future__ import annotations

import socket
from typing import Any

import trio
import trio.lowlevel


class UnknownHosts(trio.abc.HostnameResolver):
    """A resolver that knows no host at all, as DNS answers for a name that does not exist.

    Installed at the start of a test (trio keeps it for the rest of the run), so these tests
    neither depend on the machine's DNS nor wait for it.
    """

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        await trio.lowlevel.checkpoint()
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
        raise NotImplementedError


def install_unknown_hosts() -> None:
    """From now on in this trio run, every host name lookup fails as for an unknown name."""
    trio.socket.set_custom_hostname_resolver(UnknownHosts())
