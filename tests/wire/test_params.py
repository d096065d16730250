"""CreateSession / Continue builders (api.md §1)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from simtrio.errors import InvalidParams
from simtrio.params import Continue, CreateSession, as_continue_params, as_create_request
from simtrio.wire import types as t
from simtrio.wire.codec import encode

TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATOKEN = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
WALLET = "6duoaQ4JsN96MVWhKgWDKztTcqHS1imTyWyu9hqQBUpg"

CREATE_DEFAULTS = (
    '{"method":"createBacktestSession","params":{"startSlot":4000,"endSlot":4005,'
    '"signerFilter":[],"sendSummary":false,"capacityWaitTimeoutSecs":null,'
    '"disconnectTimeoutSecs":null,"extraComputeUnits":null,"agents":[],"discoveries":[],'
    '"parallel":false}}'
)


def test_end_slot_and_slot_count_give_the_same_request() -> None:
    by_end = CreateSession(4000, end_slot=4005)
    by_count = CreateSession(4000, slot_count=5)
    assert by_end == by_count
    assert by_end.to_request() == by_count.to_request()
    assert encode(by_count.to_request()) == CREATE_DEFAULTS
    assert by_count.slot_count == 5


def test_zero_slot_count_is_a_single_slot_range() -> None:
    assert CreateSession(7, slot_count=0).to_request().end_slot == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"end_slot": 4005, "slot_count": 5},
        {"end_slot": -1},
        {"end_slot": 3999},  # before the start
        {"slot_count": -1},
        {"end_slot": 2**64},
        {"slot_count": 2**64},
        {"end_slot": "4005"},
        {"end_slot": 4005.0},
        {"end_slot": True},
        {"end_slot": 4005, "disconnect_timeout_secs": 901},
        {"end_slot": 4005, "disconnect_timeout_secs": -1},
        {"end_slot": 4005, "capacity_wait_timeout_secs": -1},
        {"end_slot": 4005, "capacity_wait_timeout_secs": 2**16},
        {"end_slot": 4005, "extra_compute_units": 2**32},
        {"end_slot": 4005, "signer_filter": ["not-an-address"]},
        {"end_slot": 4005, "signer_filter": TOKEN},
        {"end_slot": 4005, "send_summary": 1},
        {"end_slot": 4005, "parallel": "yes"},
        {"end_slot": 4005, "agents": ["agent"]},
        {"end_slot": 4005, "agents": [{1: "x"}]},
        {"end_slot": 4005, "discoveries": [TOKEN]},
    ],
)
def test_create_rejects_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        CreateSession(4000, **kwargs)


@pytest.mark.parametrize("start", [-1, 2**64, "4000", None, 1.5])
def test_create_rejects_bad_start(start: Any) -> None:
    with pytest.raises(InvalidParams):
        CreateSession(start, end_slot=4005)


def test_invalid_params_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CreateSession(4000)


def test_disconnect_timeout_at_the_limit_is_accepted() -> None:
    assert CreateSession(1, end_slot=2, disconnect_timeout_secs=900).disconnect_timeout_secs == 900
    assert CreateSession(1, end_slot=2, disconnect_timeout_secs=0).disconnect_timeout_secs == 0


def test_create_with_every_option_matches_the_golden_text() -> None:
    agent = {"name": "agent-été", "wallet": WALLET}
    create = CreateSession(
        4000,
        end_slot=4099,
        signer_filter=[ATOKEN, TOKEN, WALLET, ATOKEN],
        send_summary=True,
        capacity_wait_timeout_secs=600,
        disconnect_timeout_secs=900,
        extra_compute_units=50000,
        agents=[agent],
        discoveries=[t.ProgramExecuted(TOKEN)],
    )
    assert create.signer_filter == (TOKEN, WALLET, ATOKEN)
    assert encode(create.to_request()) == (
        '{"method":"createBacktestSession","params":{"startSlot":4000,"endSlot":4099,'
        f'"signerFilter":["{TOKEN}","{WALLET}","{ATOKEN}"],"sendSummary":true,'
        '"capacityWaitTimeoutSecs":600,"disconnectTimeoutSecs":900,"extraComputeUnits":50000,'
        f'"agents":[{{"name":"agent-été","wallet":"{WALLET}"}}],'
        f'"discoveries":[{{"ProgramExecuted":"{TOKEN}"}}],"parallel":false}}}}'
    )
    agent["name"] = "changed later"  # the builder took its own copy
    assert create.to_request().agents == [{"name": "agent-été", "wallet": WALLET}]


def test_to_request_returns_unshared_containers() -> None:
    create = CreateSession(1, end_slot=2, signer_filter=[TOKEN], agents=[{"a": 1}])
    first = create.to_request()
    first.signer_filter.append(ATOKEN)
    first.agents[0]["a"] = 2
    second = create.to_request()
    assert second.signer_filter == [TOKEN]
    assert second.agents == [{"a": 1}]


def test_builders_are_frozen() -> None:
    create = CreateSession(1, end_slot=2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        create.end_slot = 3  # type: ignore[misc]
    cont = Continue()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cont.advance_count = 3  # type: ignore[misc]


def test_builders_are_hashable_values() -> None:
    agents = [{"name": "a", "weight": 1}]
    first = CreateSession(1, end_slot=2, agents=agents)
    assert hash(first) == hash(CreateSession(1, end_slot=2, agents=agents))
    assert (
        len({first, CreateSession(1, end_slot=2, agents=agents), CreateSession(1, end_slot=3)}) == 2
    )
    assert hash(Continue(3)) == hash(Continue(3, modify_account_states={}))
    assert Continue(3) != Continue(4)


def test_reprs_stay_short_and_hide_payloads() -> None:
    create = CreateSession(
        4000,
        slot_count=5,
        signer_filter=[TOKEN],
        agents=[{"secret_config": "x" * 10_000}],
        parallel=True,
    )
    text = repr(create)
    assert text.startswith("CreateSession(4000, end_slot=4005")
    assert "secret_config" not in text
    assert "<1 agent>" in text
    assert "parallel=True" in text
    assert len(text) < 200
    assert repr(CreateSession(1, end_slot=2)) == "CreateSession(1, end_slot=2)"

    account = t.AccountData(t.EncodedBinary("A" * 100_000), False, 1, TOKEN, 3)
    cont = Continue(3, transactions=["B" * 100_000] * 2, modify_account_states={TOKEN: account})
    assert (
        repr(cont)
        == "Continue(3, transactions=<2 transactions>, modify_account_states=<1 account>)"
    )
    assert repr(Continue()) == "Continue(1)"


def test_continue_defaults_match_the_golden_text() -> None:
    assert Continue().to_params() == t.ContinueParams(1)
    assert encode(Continue().to_params()) == (
        '{"method":"continue","params":{"advanceCount":1,"transactions":[],"modifyAccountStates":{}}}'
    )


def test_continue_orders_account_overrides_by_address_value() -> None:
    mint = t.AccountData(
        t.EncodedBinary("AAEC"), False, 1461600, "11111111111111111111111111111111", 3
    )
    program = t.AccountData(
        t.EncodedBinary("f0VMRgIBAQA="),
        True,
        1141440,
        "BPFLoaderUpgradeab1e11111111111111111111111",
        8,
    )
    cont = Continue(
        3,
        transactions=["AQIDBA==", "+/8AAQ=="],
        modify_account_states={ATOKEN: mint, TOKEN: program},
    )
    assert list(cont.modify_account_states) == [TOKEN, ATOKEN]
    params = cont.to_params()
    assert params.transactions == ["AQIDBA==", "+/8AAQ=="]
    text = encode(params)
    assert text.index(TOKEN) < text.index(ATOKEN)
    assert '"+/8AAQ=="' in text


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((-1,), {}),
        ((2**64,), {}),
        ((True,), {}),
        (("1",), {}),
        ((), {"transactions": "AQID"}),
        ((), {"transactions": [1]}),
        ((), {"modify_account_states": {"not-an-address": None}}),
        ((), {"modify_account_states": {TOKEN: {"lamports": 1}}}),
        ((), {"modify_account_states": [TOKEN]}),
    ],
)
def test_continue_rejects_bad_parameters(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        Continue(*args, **kwargs)


def test_continue_u64_max_is_allowed() -> None:
    assert Continue(2**64 - 1).to_params().advance_count == 2**64 - 1


def test_as_continue_params() -> None:
    raw = t.ContinueParams(4)
    assert as_continue_params(raw) is raw
    assert as_continue_params(Continue(4)) == raw
    with pytest.raises(InvalidParams):
        as_continue_params(4)  # type: ignore[arg-type]


def test_as_create_request() -> None:
    raw = t.CreateBacktestSessionRequest(1, 2)
    assert as_create_request(raw) is raw
    assert as_create_request(CreateSession(1, end_slot=2)) == raw
    with pytest.raises(InvalidParams):
        as_create_request({"start_slot": 1})  # type: ignore[arg-type]
