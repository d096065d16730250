"""Account states that inject an upgradeable program: pure builders, no I/O.

An upgradeable program is two accounts owned by the upgradeable BPF loader: the Program
account (36 bytes: tag ``2`` and the ProgramData address, executable) and its ProgramData
account (a 45-byte header, then the ELF). Overriding the ProgramData of an existing program
runs a new build of it against history; adding a Program account as well creates a program
under a new id.
"""

from __future__ import annotations

__all__: list[str] = []

import base64
import struct
from typing import Final

from solders.pubkey import Pubkey
from solders.rent import Rent

from simtrio.errors import InvalidParams
from simtrio.wire.jsonrpc import AddressInput, address_text
from simtrio.wire.rules import U64_MAX
from simtrio.wire.types import AccountData, EncodedBinary

BPF_LOADER_UPGRADEABLE: Final = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
"""Owner of both accounts of an upgradeable program."""
PROGRAMDATA_HEADER_LEN: Final = 45
"""u32 tag | u64 deploy slot | u8 authority flag | 32-byte authority: the ELF starts here."""
PROGRAM_ACCOUNT_LEN: Final = 36
"""u32 tag | 32-byte ProgramData address."""

_PROGRAM_TAG: Final = 2
_PROGRAMDATA_TAG: Final = 3
_RENT: Final = Rent.default()


def _pubkey(value: AddressInput, what: str) -> Pubkey:
    return Pubkey.from_string(address_text(value, what))


def _lamports(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise InvalidParams(f"lamports must be an int between 0 and 2**64-1, got {value!r}")
    return value


def _encoded(data: bytes) -> EncodedBinary:
    return EncodedBinary(base64.b64encode(data).decode("ascii"))


def programdata_address(program_id: AddressInput) -> Pubkey:
    """The ProgramData address of ``program_id``: the PDA of ``[program_id]`` under the loader."""
    program = _pubkey(program_id, "program_id")
    address, _bump = Pubkey.find_program_address([bytes(program)], BPF_LOADER_UPGRADEABLE)
    return address


def deploy_slot_for(start_slot: int) -> int:
    """``max(start_slot - 1, 0)``: a program deployed there is loaded in the first slot run."""
    if isinstance(start_slot, bool) or not isinstance(start_slot, int) or start_slot < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"start_slot must be an int >= 0, got {start_slot!r}")
    return max(start_slot - 1, 0)


def rent_exempt_minimum(size: int) -> int:
    """Lamports that make ``size`` bytes rent-exempt under the default rent (no RPC needed)."""
    return int(_RENT.minimum_balance(size))


def programdata_blob(
    elf: bytes, *, deploy_slot: int, upgrade_authority: AddressInput | None = None
) -> bytes:
    """The ProgramData account's data: the fixed 45-byte header, then ``elf``.

    The header is u32 LE ``3`` | u64 LE ``deploy_slot`` | u8 ``1`` with an authority, else
    ``0`` | the 32-byte authority, all zero when there is none.

    Raises:
        InvalidParams: ``elf`` is not bytes or is empty, ``deploy_slot`` is not a u64, or the
            authority is not an address.
    """
    if not isinstance(elf, bytes | bytearray | memoryview):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"elf must be bytes, not {type(elf).__name__}")
    if not len(elf):
        raise InvalidParams("elf is empty")
    if isinstance(deploy_slot, bool) or not isinstance(deploy_slot, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"deploy_slot must be an int, not {type(deploy_slot).__name__}")
    if not 0 <= deploy_slot <= U64_MAX:
        raise InvalidParams(f"deploy_slot must be between 0 and 2**64-1, got {deploy_slot}")
    if upgrade_authority is None:
        flag, authority = 0, bytes(32)
    else:
        flag, authority = 1, bytes(_pubkey(upgrade_authority, "upgrade_authority"))
    header = struct.pack("<IQB", _PROGRAMDATA_TAG, deploy_slot, flag) + authority
    assert len(header) == PROGRAMDATA_HEADER_LEN
    return header + bytes(elf)


def build_program_injection(
    program_id: AddressInput,
    elf: bytes,
    *,
    deploy_slot: int,
    upgrade_authority: AddressInput | None = None,
    lamports: int,
) -> dict[Pubkey, AccountData]:
    """``{programdata_address: AccountData}`` that loads ``elf`` as ``program_id``'s code.

    The account is owned by the upgradeable loader, not executable, sized to its data, and
    holds ``lamports`` (pass the rent-exempt minimum for ``PROGRAMDATA_HEADER_LEN +
    len(elf)`` bytes). Use ``deploy_slot = deploy_slot_for(start_slot)`` so the program is
    loaded in the first slot that executes.

    Raises:
        InvalidParams: an argument of the wrong kind or out of range.
    """
    blob = programdata_blob(elf, deploy_slot=deploy_slot, upgrade_authority=upgrade_authority)
    account = AccountData(
        data=_encoded(blob),
        executable=False,
        lamports=_lamports(lamports),
        owner=str(BPF_LOADER_UPGRADEABLE),
        space=len(blob),
    )
    return {programdata_address(program_id): account}


def build_program_account(
    program_id: AddressInput, *, lamports: int | None = None
) -> dict[Pubkey, AccountData]:
    """``{program_id: AccountData}``: the Program account of a program new at that slot.

    36 bytes (u32 LE ``2`` | the ProgramData address), owned by the upgradeable loader,
    executable. ``lamports`` defaults to the default rent's exempt minimum for 36 bytes.

    Raises:
        InvalidParams: an argument of the wrong kind or out of range.
    """
    program = _pubkey(program_id, "program_id")
    data = struct.pack("<I", _PROGRAM_TAG) + bytes(programdata_address(program))
    assert len(data) == PROGRAM_ACCOUNT_LEN
    amount = rent_exempt_minimum(PROGRAM_ACCOUNT_LEN) if lamports is None else _lamports(lamports)
    account = AccountData(
        data=_encoded(data),
        executable=True,
        lamports=amount,
        owner=str(BPF_LOADER_UPGRADEABLE),
        space=PROGRAM_ACCOUNT_LEN,
    )
    return {program: account}
