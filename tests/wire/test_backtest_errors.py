"""The server's error variants: each one's KIND is its class name, and the wire tags hold."""

from __future__ import annotations

import pytest

from simtrio.wire import backtest_errors
from simtrio.wire.backtest_errors import KNOWN_ERRORS, BacktestError, UnknownBacktestError
from simtrio.wire.error_codec import decode_backtest_error

PROTOCOL_TAGS = [
    "InvalidTransactionEncoding",
    "InvalidTransactionFormat",
    "InvalidAccountEncoding",
    "InvalidAccountOwner",
    "InvalidAccountPubkey",
    "NoMoreBlocks",
    "AdvanceSlotFailed",
    "InvalidRequest",
    "Internal",
    "InvalidBlockhashFormat",
    "InitializingSysvarsFailed",
    "ClerkError",
    "SimulationError",
    "SessionNotFound",
    "SessionOwnerMismatch",
    "SessionOwnershipBusy",
    "BundleNotFound",
    "FinalizeSlotFailed",
    "NoProducedBlocksInRange",
    "SessionNameTaken",
]
"""The tags of protocol §5, written out here independently of the classes."""
TERMINAL = {"SessionNotFound", "SessionOwnerMismatch", "SessionOwnershipBusy", "Internal"}


def test_known_errors_carry_the_protocol_tags_in_order() -> None:
    assert [cls.KIND for cls in KNOWN_ERRORS] == PROTOCOL_TAGS


@pytest.mark.parametrize("cls", KNOWN_ERRORS, ids=[cls.__name__ for cls in KNOWN_ERRORS])
def test_kind_is_the_class_name(cls: type[BacktestError]) -> None:
    assert cls.__name__ == cls.KIND
    # A bare tag decodes to that kind, whether or not its fields could be read.
    assert decode_backtest_error(cls.KIND).kind == cls.KIND
    assert decode_backtest_error(cls.KIND).is_terminal == (cls.__name__ in TERMINAL)


def test_known_errors_list_every_variant() -> None:
    variants = {
        value
        for value in vars(backtest_errors).values()
        if isinstance(value, type) and issubclass(value, BacktestError)
    }
    assert variants - set(KNOWN_ERRORS) == {BacktestError, UnknownBacktestError}


def test_unknown_errors_keep_their_kinds() -> None:
    assert BacktestError.KIND == UnknownBacktestError.KIND == "Unknown"
    assert UnknownBacktestError().kind == "Unknown"
    assert UnknownBacktestError({"Brand": 1}, tag="Brand").kind == "Brand"
    assert BacktestError().kind == "Unknown"
