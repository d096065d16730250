"""Every JSON key and tag simtrio emits, in one place (protocol §0 "Keep spellings in one place").

:data:`SPELLINGS` maps each data class to its tag and the wire key of each attribute, in
emission order; the converter generates its readers and writers from it. Beside it sit the
other per-field rules of the control plane: fields narrower than u64, decoder defaults, the
alternate keys a decoder also accepts (§2.2) and the tolerated error shapes (§5.2).
"""

from __future__ import annotations

__all__: list[str] = []

from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import attrs

from simtrio.wire import types
from simtrio.wire.backtest_errors import BOOKKEEPING_FIELDS, KNOWN_ERRORS, BacktestError
from simtrio.wire.rules import U16_MAX, U32_MAX

SEQ_ID_KEY: Final = "seqId"
METHOD_KEY: Final = "method"
PARAMS_KEY: Final = "params"
# Decoders look a field up under these alternates too (snake_case first, then camelCase; §2.2).
SEQ_ID_ALT: Final = "seq_id"
# Tolerated error shapes (§5.2): where a tag may sit, and where its fields may be nested.
ERROR_TAG_KEYS: Final = ("kind", "type", "code", "method")
ERROR_PAYLOAD_KEYS: Final = ("params", "content", "data")

Spelling: TypeAlias = tuple[str | None, Mapping[str, str] | None]
"""``(tag, fields)``. ``tag`` is the ``method`` (or error / filter tag); ``fields`` maps each
Python attribute to its wire key in emission order, ``{}`` marks a unit variant and ``None`` a
newtype variant whose payload is its single attribute."""


def _error_spelling(cls: type[BacktestError]) -> Spelling:
    """An error variant is tagged with its ``KIND`` and writes each field under its own name."""
    return cls.KIND, {f.name: f.name for f in attrs.fields(cls) if f.name not in BOOKKEEPING_FIELDS}


SPELLINGS: Final[Mapping[type, Spelling]] = {
    # -- requests (§3): standalone structs camelCase, struct-variant fields snake_case (§2.2)
    types.CreateBacktestSessionRequest: (
        "createBacktestSession",
        {
            "start_slot": "startSlot",
            "end_slot": "endSlot",
            "signer_filter": "signerFilter",
            "send_summary": "sendSummary",
            "capacity_wait_timeout_secs": "capacityWaitTimeoutSecs",
            "disconnect_timeout_secs": "disconnectTimeoutSecs",
            "extra_compute_units": "extraComputeUnits",
            "agents": "agents",
            "discoveries": "discoveries",
            "parallel": "parallel",
        },
    ),
    types.ContinueParams: (
        "continue",
        {
            "advance_count": "advanceCount",
            "transactions": "transactions",
            "modify_account_states": "modifyAccountStates",
        },
    ),
    types.ContinueToParams: ("continueTo", {"slot": "slot", "batch_index": "batchIndex"}),
    types.ContinueSessionRequestV1: (
        "continueSessionV1",
        {"session_id": "sessionId", "request": "request"},
    ),
    types.ContinueToSessionRequestV1: (
        "continueToSessionV1",
        {"session_id": "sessionId", "request": "request"},
    ),
    types.CloseBacktestSession: ("closeBacktestSession", {}),
    types.CloseSessionRequestV1: ("closeSessionV1", {"session_id": "sessionId"}),
    types.AttachBacktestSession: (
        "attachBacktestSession",
        {"session_id": "session_id", "last_sequence": "last_sequence"},
    ),
    types.ResumeAttachedSession: ("resumeAttachedSession", {}),
    types.AttachParallelControlSessionV2: (
        "attachParallelControlSessionV2",
        {"control_session_id": "control_session_id", "last_sequences": "last_sequences"},
    ),
    types.AccountData: (
        None,
        {
            "data": "data",
            "executable": "executable",
            "lamports": "lamports",
            "owner": "owner",
            "space": "space",
        },
    ),
    types.EncodedBinary: (None, {"data": "data", "encoding": "encoding"}),
    # -- responses (§4): the reference server writes snake_case everywhere
    types.SessionCreated: (
        "sessionCreated",
        {"session_id": "session_id", "rpc_endpoint": "rpc_endpoint", "task_id": "task_id"},
    ),
    types.SessionAttached: (
        "sessionAttached",
        {"session_id": "session_id", "rpc_endpoint": "rpc_endpoint", "task_id": "task_id"},
    ),
    types.SessionsCreated: ("sessionsCreated", {"session_ids": "session_ids"}),
    types.SessionsCreatedV2: (
        "sessionsCreatedV2",
        {
            "control_session_id": "control_session_id",
            "session_ids": "session_ids",
            "task_ids": "task_ids",
            "start_slots": "start_slots",
            "end_slots": "end_slots",
        },
    ),
    types.ParallelSessionAttachedV2: (
        "parallelSessionAttachedV2",
        {
            "control_session_id": "control_session_id",
            "session_ids": "session_ids",
            "task_ids": "task_ids",
        },
    ),
    types.ReadyForContinue: ("readyForContinue", {}),
    types.SlotNotification: ("slotNotification", None),
    types.Paused: ("paused", None),
    types.DiscoveryBatch: ("discoveryBatch", None),
    types.Error: ("error", None),
    types.Success: ("success", {}),
    types.Completed: ("completed", {"summary": "summary", "agent_stats": "agent_stats"}),
    types.Status: ("status", {"status": "status"}),
    types.SessionEventV1: ("sessionEventV1", {"session_id": "session_id", "event": "event"}),
    types.SessionEventV2: (
        "sessionEventV2",
        {"session_id": "session_id", "seq_id": "seq_id", "event": "event"},
    ),
    types.PausedEvent: (None, {"slot": "slot", "batch_index": "batch_index"}),
    types.DiscoveryBatchEvent: (
        None,
        {
            "slot": "slot",
            "batch_index": "batch_index",
            "matched": "matched",
            "transactions": "transactions",
        },
    ),
    types.SessionSummary: (
        None,
        {
            "correct_simulation": "correct_simulation",
            "incorrect_simulation": "incorrect_simulation",
            "execution_errors": "execution_errors",
            "balance_diff": "balance_diff",
            "log_diff": "log_diff",
        },
    ),
    types.AgentStatsReport: (
        None,
        {
            "name": "name",
            "slots_processed": "slots_processed",
            "opportunities_found": "opportunities_found",
            "opportunities_skipped": "opportunities_skipped",
            "no_routes": "no_routes",
            "txs_produced": "txs_produced",
            "expected_gain_by_mint": "expected_gain_by_mint",
            "txs_submitted": "txs_submitted",
            "txs_failed": "txs_failed",
            "txs_simulation_rejected": "txs_simulation_rejected",
            "txs_simulation_failed": "txs_simulation_failed",
        },
    ),
    # -- discovery filters (§4.5): externally tagged
    types.ProgramExecuted: ("ProgramExecuted", None),
    # -- errors (§5): externally tagged by KIND (the class name), fields under their own names
    **{cls: _error_spelling(cls) for cls in KNOWN_ERRORS},
    # -- management HTTP (§1.5): camelCase, in the documented order
    types.AvailableRange: (
        None,
        {
            "snapshot_slot": "snapshotSlot",
            "snapshot_slot_utc": "snapshotSlotUtc",
            "bundle_start_slot": "bundleStartSlot",
            "bundle_start_slot_utc": "bundleStartSlotUtc",
            "max_bundle_end_slot": "maxBundleEndSlot",
            "max_bundle_end_slot_utc": "maxBundleEndSlotUtc",
        },
    ),
}


UNSIGNED_BOUNDS: Final[Mapping[tuple[type, str], int]] = {
    (types.CreateBacktestSessionRequest, "capacity_wait_timeout_secs"): U16_MAX,
    (types.CreateBacktestSessionRequest, "disconnect_timeout_secs"): U16_MAX,
    (types.CreateBacktestSessionRequest, "extra_compute_units"): U32_MAX,
    (types.ContinueToParams, "batch_index"): U32_MAX,
    (types.PausedEvent, "batch_index"): U32_MAX,
    (types.DiscoveryBatchEvent, "batch_index"): U32_MAX,
}
"""Fields narrower than u64; every other unsigned field is a u64."""

DECODE_DEFAULTS: Final[Mapping[tuple[type, str], object]] = {
    (types.ContinueParams, "advance_count"): 1,  # §3.2
    (types.DiscoveryBatchEvent, "batch_index"): None,
}
"""Decoder defaults for missing keys where the class itself has none."""


def key(cls: type, attr: str) -> str:
    """The emitted key of one attribute."""
    fields = SPELLINGS[cls][1]
    if not fields:
        raise KeyError(f"{cls.__name__} has no struct fields")
    return fields[attr]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def decode_keys(cls: type, attr: str) -> tuple[str, tuple[str, ...]]:
    """The emitted key (for messages) and the keys a decoder tries: snake_case, then camelCase."""
    fields = SPELLINGS.get(cls, (None, None))[1]
    emitted = fields[attr] if fields and attr in fields else attr
    return emitted, tuple(dict.fromkeys((attr, _camel(attr), emitted)))


def resolved_fields(cls: type) -> tuple[attrs.Attribute[Any], ...]:
    """The wire fields of a data class, with their annotations resolved."""
    attrs.resolve_types(cls)
    return tuple(a for a in attrs.fields(cls) if a.name not in BOOKKEEPING_FIELDS)


def check_tables() -> None:
    """Fail if the spelling table and the data classes drift apart."""
    for cls, (_tag, fields) in SPELLINGS.items():
        names = {f.name for f in resolved_fields(cls)}
        if fields is None:
            if len(names) != 1:
                raise TypeError(f"{cls.__name__}: a newtype needs exactly one field")
        elif set(fields) != names:
            raise TypeError(f"{cls.__name__}: spelling table does not match its fields")


check_tables()
