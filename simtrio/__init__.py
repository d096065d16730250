"""simtrio: a Trio-native client for the Solana simulator backtest WebSocket API.

Public names live in their own modules; this package only re-exports them.
"""

from __future__ import annotations

__all__ = [
    "AccountData",
    "BackoffPolicy",
    "BacktestClient",
    "BacktestSession",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionStatus",
    "Continue",
    "ContinueResult",
    "ContinueSendFailed",
    "ControlClosed",
    "ControlFailed",
    "CreateFailed",
    "CreateSession",
    "DataSubscription",
    "DiscoveryCompleted",
    "DiscoveryFilter",
    "DiscoveryPaused",
    "GRACEFUL_CLOSE_TIMEOUT",
    "InvalidParams",
    "MAX_DISCONNECT_TIMEOUT_SECS",
    "ManagedConfig",
    "ManagedSession",
    "ManagedSessionError",
    "ParallelSession",
    "ParallelSubSession",
    "ProgramExecuted",
    "ProgramLogs",
    "ProtocolError",
    "ReadyOutcome",
    "RemoteError",
    "RequestTimeout",
    "RpcError",
    "RpcHttpError",
    "SessionInfo",
    "SessionRpc",
    "SimtrioError",
    "SimulationResult",
    "SubscriptionFailed",
    "__version__",
    "build_program_account",
    "build_program_injection",
    "deploy_slot_for",
    "modify_program",
    "open_account_diff_subscription",
    "open_logs_subscription",
    "open_managed_session",
    "open_parallel_session",
    "open_session_rpc",
    "open_transaction_subscription",
    "programdata_address",
]

from simtrio.backtest_session import GRACEFUL_CLOSE_TIMEOUT, BacktestSession
from simtrio.client import BacktestClient
from simtrio.core.backoff import BackoffPolicy
from simtrio.core.discovery import DiscoveryCompleted, DiscoveryPaused
from simtrio.core.session import ContinueResult, ReadyOutcome
from simtrio.errors import (
    ConnectError,
    ConnectionClosed,
    ContinueSendFailed,
    ControlClosed,
    ControlFailed,
    CreateFailed,
    InvalidParams,
    ManagedSessionError,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    RpcError,
    RpcHttpError,
    SimtrioError,
    SubscriptionFailed,
)
from simtrio.events import ProgramLogs
from simtrio.managed.config import ConnectionStatus, ManagedConfig, SessionInfo
from simtrio.managed.parallel import ParallelSession, ParallelSubSession, open_parallel_session
from simtrio.managed.session import ManagedSession, open_managed_session
from simtrio.managed.standalone import (
    DataSubscription,
    open_account_diff_subscription,
    open_logs_subscription,
    open_transaction_subscription,
)
from simtrio.params import MAX_DISCONNECT_TIMEOUT_SECS, Continue, CreateSession
from simtrio.rpc import SessionRpc, SimulationResult, modify_program, open_session_rpc
from simtrio.version import __version__
from simtrio.wire.programs import (
    build_program_account,
    build_program_injection,
    deploy_slot_for,
    programdata_address,
)
from simtrio.wire.types import AccountData, DiscoveryFilter, ProgramExecuted
