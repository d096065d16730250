"""``simtrio run --program-id ID --program-so PATH``: a program build loaded into every session.

Each ``--program-so`` pairs, in order, with a ``--program-id``. Before its first step, every
(sub-)session is sent the account states that make the ELF the code of that program from its
first slot on: the ProgramData account (deployed in the slot before the session's first, so the
program is loaded when execution starts) and the Program account pointing at it, both funded
with the rent-exempt minimum. Sending the Program account too makes the same command work for a
program that does not exist at that slot as well as for a new build of one that does.

The ELF files are read and the states checked when the command line is, so a bad path or id is
a usage error before anything connects. Building the states is pure (no RPC).
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING

import attrs

from simtrio.errors import SimtrioError
from simtrio.wire.programs import (
    PROGRAMDATA_HEADER_LEN,
    build_program_account,
    build_program_injection,
    deploy_slot_for,
    rent_exempt_minimum,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from solders.pubkey import Pubkey

    from simtrio.wire.types import AccountData

_ELF_MAGIC = b"\x7fELF"


class ProgramBuildError(Exception):
    """A ``--program-so`` that cannot be used; the message is one line for the user."""


@attrs.frozen
class ProgramBuild:
    """A program id and the ELF to load as its code."""

    program_id: str
    path: str
    elf: bytes = attrs.field(repr=False)


def _states(build: ProgramBuild, start_slot: int) -> dict[Pubkey, AccountData]:
    lamports = rent_exempt_minimum(PROGRAMDATA_HEADER_LEN + len(build.elf))
    states = build_program_injection(
        build.program_id, build.elf, deploy_slot=deploy_slot_for(start_slot), lamports=lamports
    )
    states.update(build_program_account(build.program_id))
    return states


def load_program_builds(
    program_ids: Sequence[str], paths: Sequence[Path]
) -> tuple[ProgramBuild, ...]:
    """Pair ``paths`` with ``program_ids`` in order and read the ELF files."""
    if len(paths) > len(program_ids):
        raise ProgramBuildError(
            f"--program-so given {len(paths)} times but --program-id only "
            f"{len(program_ids)}: each ELF pairs, in order, with a program id"
        )
    builds: list[ProgramBuild] = []
    for program_id, path in zip(program_ids, paths, strict=False):
        try:
            elf = path.read_bytes()
        except OSError as exc:
            raise ProgramBuildError(
                f"--program-so {path}: cannot read: {exc.strerror or exc}"
            ) from None
        if not elf.startswith(_ELF_MAGIC):
            raise ProgramBuildError(f"--program-so {path}: not an ELF file (a program's .so)")
        build = ProgramBuild(program_id, str(path), elf)
        try:
            _states(build, 0)
        except SimtrioError as exc:
            raise ProgramBuildError(f"--program-id {program_id}: {exc}") from None
        builds.append(build)
    return tuple(builds)


def injection_states(builds: Sequence[ProgramBuild], start_slot: int) -> dict[Pubkey, AccountData]:
    """The account states a session starting at ``start_slot`` gets before its first step."""
    states: dict[Pubkey, AccountData] = {}
    for build in builds:
        states.update(_states(build, start_slot))
    return states
