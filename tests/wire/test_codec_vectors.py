"""Golden vectors (protocol §13): exact request text, decoded values, canonical response text."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest

from simtrio import wire as t
from simtrio.errors import ProtocolError
from simtrio.wire.codec import decode_frame, decode_response, encode, encode_response
from tests.wire.vectors import load_vectors

ENCODE = load_vectors("encode.json")
DECODE = load_vectors("decode.json")

# --------------------------------------------------------------------------------------------
# Building requests from their descriptions
# --------------------------------------------------------------------------------------------

_REQUEST_VARIANTS: dict[str, type] = {
    "CreateBacktestSession": t.CreateBacktestSessionRequest,
    "Continue": t.ContinueParams,
    "ContinueTo": t.ContinueToParams,
    "ContinueSessionV1": t.ContinueSessionRequestV1,
    "ContinueToSessionV1": t.ContinueToSessionRequestV1,
    "CloseSessionV1": t.CloseSessionRequestV1,
    "CloseBacktestSession": t.CloseBacktestSession,
    "AttachBacktestSession": t.AttachBacktestSession,
    "ResumeAttachedSession": t.ResumeAttachedSession,
    "AttachParallelControlSessionV2": t.AttachParallelControlSessionV2,
}


def _build_filter(desc: dict[str, Any]) -> t.DiscoveryFilter:
    assert desc["variant"] == "ProgramExecuted"
    return t.ProgramExecuted(desc["program_id"])


def _build_account(desc: dict[str, Any]) -> t.AccountData:
    return t.AccountData(
        data=t.EncodedBinary(**desc["data"]),
        executable=desc["executable"],
        lamports=desc["lamports"],
        owner=desc["owner"],
        space=desc["space"],
    )


def build_request(desc: dict[str, Any]) -> t.BacktestRequest:
    fields = {k: v for k, v in desc.items() if k != "variant"}
    cls = _REQUEST_VARIANTS[desc["variant"]]
    if "request" in fields:
        fields["request"] = build_request(fields["request"])
    if "discoveries" in fields:
        fields["discoveries"] = [_build_filter(d) for d in fields["discoveries"]]
    if "modify_account_states" in fields:
        fields["modify_account_states"] = {
            k: _build_account(v) for k, v in fields["modify_account_states"].items()
        }
    request: t.BacktestRequest = cls(**fields)
    return request


@pytest.mark.parametrize("entry", ENCODE, ids=[e["name"] for e in ENCODE])
def test_encode_vector(entry: dict[str, Any]) -> None:
    assert encode(build_request(entry["request"])) == entry["json"]


# --------------------------------------------------------------------------------------------
# Describing decoded values in the vocabulary of `expect`
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return {a.name: _plain(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def describe_error(err: t.BacktestError) -> dict[str, Any]:
    if isinstance(err, t.UnknownBacktestError):
        return {"kind": err.kind, "unknown": True, "terminal": err.is_terminal, "raw": err.raw}
    out: dict[str, Any] = {"kind": err.kind, "terminal": err.is_terminal}
    out.update({a.name: getattr(err, a.name) for a in attrs.fields(type(err)) if a.name != "raw"})
    return out


def describe_filter(flt: t.DiscoveryFilter) -> dict[str, Any]:
    if isinstance(flt, t.ProgramExecuted):
        return {"variant": "ProgramExecuted", "program_id": flt.program_id}
    return {"variant": "UnknownDiscoveryFilter", "raw": flt.raw}


def describe_status(status: t.BacktestStatus) -> Any:
    assert isinstance(status, t.BacktestStatus)
    return status.value if status.is_known else {"unknown": status.value}


def describe(value: Any) -> dict[str, Any]:
    """A decoded response or session event as an `expect` object (§13)."""
    out: dict[str, Any] = {"variant": type(value).__name__}
    if isinstance(value, t.Paused | t.DiscoveryBatch):
        out.update(_plain(value.event))
        if isinstance(value, t.DiscoveryBatch):
            out["matched"] = [describe_filter(f) for f in value.event.matched]
    elif isinstance(value, t.Error):
        out["error"] = describe_error(value.error)
    elif isinstance(value, t.Status):
        out["status"] = describe_status(value.status)
    elif isinstance(value, t.SessionEventV1 | t.SessionEventV2):
        out.update(_plain(value))
        out["event"] = describe(value.event)
    else:
        out.update(_plain(value))
    return out


def _same_json(a: Any, b: Any) -> bool:
    """Compare as JSON values: maps as maps, and ``true`` is not ``1``."""
    opt = orjson.OPT_SORT_KEYS
    return orjson.dumps(a, option=opt) == orjson.dumps(b, option=opt)


def _input(entry: dict[str, Any]) -> str:
    text: str = entry["json"] if "json" in entry else entry["text"]
    return text


@pytest.mark.parametrize("entry", DECODE, ids=[e["name"] for e in DECODE])
def test_decode_vector(entry: dict[str, Any]) -> None:
    text = _input(entry)
    expect = dict(entry["expect"])
    if expect.get("error") == "ProtocolError":
        with pytest.raises(ProtocolError):
            decode_frame(text)
        with pytest.raises(ProtocolError):
            decode_response(text.encode())
        return
    seq_id, response = decode_frame(text)
    assert seq_id == expect.pop("frame_seq_id", None)
    got = describe(response)
    assert _same_json(got, expect), (got, expect)
    assert decode_response(text.encode()) == response


@pytest.mark.parametrize(
    "entry",
    [e for e in DECODE if e["canonical"]],
    ids=[e["name"] for e in DECODE if e["canonical"]],
)
def test_canonical_reencode(entry: dict[str, Any]) -> None:
    seq_id, response = decode_frame(entry["json"])
    assert encode_response(response, seq_id) == entry["json"]


@pytest.mark.parametrize(
    "entry",
    [e for e in DECODE if e["expect"].get("error") != "ProtocolError"],
    ids=[e["name"] for e in DECODE if e["expect"].get("error") != "ProtocolError"],
)
def test_every_decoded_value_round_trips(entry: dict[str, Any]) -> None:
    seq_id, response = decode_frame(_input(entry))
    again = decode_frame(encode_response(response, seq_id))
    assert again == (seq_id, response)
    assert _same_json(describe(again[1]), describe(response))


def test_vectors_cover_every_request_variant() -> None:
    assert {e["request"]["variant"] for e in ENCODE} == set(_REQUEST_VARIANTS)


def test_unknown_error_keeps_its_json_first() -> None:
    text = '{"method":"error","params":{"SomethingNew":{"detail":7}}}'
    response = decode_response(text)
    assert isinstance(response, t.Error)
    error = response.error
    assert isinstance(error, t.UnknownBacktestError)
    assert error.kind == "SomethingNew"
    assert not error.is_terminal
    match error:
        case t.UnknownBacktestError(raw):
            matched = raw
        case _:
            matched = None
    assert matched == {"SomethingNew": {"detail": 7}}
    built = t.UnknownBacktestError({"Other": 1})
    assert built.raw == {"Other": 1}
    assert built.kind == "Unknown"
