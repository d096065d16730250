"""What the reference server must send on the data plane, computed from the synthetic chain."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from simtrio.server import chain
from simtrio.server.pubsub import logs_notification_text
from simtrio.wire.rpc import (
    AccountDiffNotification,
    SubscriptionComplete,
    TransactionNotification,
)
from simtrio.wire.rpc_server import encode_rpc

if TYPE_CHECKING:
    from simtrio.server.config import ServerConfig


def expected_transactions(config: ServerConfig, program: str, slots: range, sub: int) -> list[str]:
    cfg = config.chain
    return [
        encode_rpc(TransactionNotification(sub, s, chain.transaction_payload(cfg, tx)))
        for s in slots
        for tx in chain.slot_transactions(cfg, s)
        if program in tx.program_ids
    ]


def expected_diffs(config: ServerConfig, program: str, slots: range, sub: int) -> list[str]:
    cfg = config.chain
    return [
        encode_rpc(AccountDiffNotification(sub, s, d.account, d.signature, d.pre, d.post))
        for s in slots
        for tx in chain.slot_transactions(cfg, s)
        for d in chain.account_diffs(cfg, tx)
        if d.owner == program
    ]


def expected_logs(config: ServerConfig, program: str, slots: range, sub: int) -> list[str]:
    cfg = config.chain
    out: list[str] = []
    for s in slots:
        for tx in chain.slot_transactions(cfg, s):
            if program in tx.program_ids:
                err = None if tx.success else chain.transaction_error(cfg, tx)
                text = logs_notification_text(s, tx.signature, err, tx.log_messages)
                out.append(text.replace('"subscription":0,', f'"subscription":{sub},', 1))
    return out


def terminal(sub: int) -> str:
    return encode_rpc(SubscriptionComplete(sub))


def slot_of(text: str) -> int:
    result = orjson.loads(text)["params"]["result"]
    return int(result["context"]["slot"] if "context" in result else result["slot"])
