"""Reading the signature and outcome out of transaction payloads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simtrio.wire.transaction import transaction_outcome

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonValue


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"transaction": {"signatures": ["sig1", "sig2"]}, "meta": {"err": None}}, ("sig1", None)),
        ({"value": {"transaction": {"signatures": ["s"]}, "meta": {"err": "E"}}}, ("s", "E")),
        ({"transaction": {"signatures": []}, "meta": {}}, (None, None)),
        ({"transaction": {"signatures": [7]}}, (None, None)),
        ({"transaction": "nope", "meta": ["x"]}, (None, None)),
        ({"value": 3}, (None, None)),
        ([1, 2], (None, None)),
        (None, (None, None)),
        # a bare payload that happens to carry "value" is not unwrapped
        ({"value": 1, "transaction": {"signatures": ["t"]}}, ("t", None)),
    ],
)
def test_transaction_outcome(payload: JsonValue, expected: tuple[str | None, JsonValue]) -> None:
    assert transaction_outcome(payload) == expected
