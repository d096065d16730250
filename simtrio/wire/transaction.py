"""What a consumer reads out of a ``getTransaction``-shaped payload (protocol §9.4): pure, no I/O.

Transaction notifications carry the payload either bare or wrapped in ``{"value": ...}``;
both shapes are accepted, and anything missing or of the wrong type reads as absent.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from simtrio.wire.jsontext import JsonObject, JsonValue


def _object(value: object) -> JsonObject:
    return cast("JsonObject", value) if isinstance(value, dict) else {}


def transaction_outcome(payload: JsonValue) -> tuple[str | None, JsonValue]:
    """The first signature (``None`` when there is none) and ``meta.err`` (``None`` on success)."""
    body = _object(payload)
    if "value" in body and "transaction" not in body:
        body = _object(body["value"])
    signatures = _object(body.get("transaction")).get("signatures")
    signature = None
    if isinstance(signatures, list) and signatures and isinstance(signatures[0], str):
        signature = signatures[0]
    return signature, _object(body.get("meta")).get("err")
