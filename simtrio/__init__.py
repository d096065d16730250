"""simtrio: a Trio-native client for the Solana simulator backtest WebSocket API.

Public names live in their own modules; this package only re-exports them.
"""

from __future__ import annotations

from simtrio.client import (
    GRACEFUL_CLOSE_TIMEOUT as GRACEFUL_CLOSE_TIMEOUT,
)
from simtrio.client import (
    BacktestClient as BacktestClient,
)
from simtrio.client import (
    BacktestSession as BacktestSession,
)
from simtrio.core.backoff import BackoffPolicy as BackoffPolicy
from simtrio.core.discovery import DiscoveryCompleted as DiscoveryCompleted
from simtrio.core.discovery import DiscoveryPaused as DiscoveryPaused
from simtrio.core.session import ContinueResult as ContinueResult
from simtrio.core.session import ReadyOutcome as ReadyOutcome
from simtrio.errors import (
    ConnectError as ConnectError,
)
from simtrio.errors import (
    ConnectionClosed as ConnectionClosed,
)
from simtrio.errors import (
    ContinueSendFailed as ContinueSendFailed,
)
from simtrio.errors import (
    ControlClosed as ControlClosed,
)
from simtrio.errors import (
    ControlFailed as ControlFailed,
)
from simtrio.errors import (
    CreateFailed as CreateFailed,
)
from simtrio.errors import (
    InvalidParams as InvalidParams,
)
from simtrio.errors import (
    ManagedSessionError as ManagedSessionError,
)
from simtrio.errors import (
    ProtocolError as ProtocolError,
)
from simtrio.errors import (
    RemoteError as RemoteError,
)
from simtrio.errors import (
    RequestTimeout as RequestTimeout,
)
from simtrio.errors import (
    RpcError as RpcError,
)
from simtrio.errors import (
    RpcHttpError as RpcHttpError,
)
from simtrio.errors import (
    SimtrioError as SimtrioError,
)
from simtrio.errors import (
    SubscriptionFailed as SubscriptionFailed,
)
from simtrio.events import ProgramLogs as ProgramLogs
from simtrio.managed.config import ConnectionStatus as ConnectionStatus
from simtrio.managed.config import ManagedConfig as ManagedConfig
from simtrio.managed.config import SessionInfo as SessionInfo
from simtrio.managed.parallel import ParallelSession as ParallelSession
from simtrio.managed.parallel import ParallelSubSession as ParallelSubSession
from simtrio.managed.parallel import open_parallel_session as open_parallel_session
from simtrio.managed.session import ManagedSession as ManagedSession
from simtrio.managed.session import open_managed_session as open_managed_session
from simtrio.managed.standalone import (
    open_account_diff_subscription as open_account_diff_subscription,
)
from simtrio.managed.standalone import (
    open_logs_subscription as open_logs_subscription,
)
from simtrio.managed.standalone import (
    open_transaction_subscription as open_transaction_subscription,
)
from simtrio.params import Continue as Continue
from simtrio.params import CreateSession as CreateSession
from simtrio.rpc import SessionRpc as SessionRpc
from simtrio.rpc import SimulationResult as SimulationResult
from simtrio.rpc import modify_program as modify_program
from simtrio.rpc import open_session_rpc as open_session_rpc
from simtrio.wire.programs import build_program_account as build_program_account
from simtrio.wire.programs import build_program_injection as build_program_injection
from simtrio.wire.programs import programdata_address as programdata_address
from simtrio.wire.types import AccountData as AccountData
from simtrio.wire.types import DiscoveryFilter as DiscoveryFilter
from simtrio.wire.types import ProgramExecuted as ProgramExecuted

__version__ = "0.1.0"

__all__ = [
    "GRACEFUL_CLOSE_TIMEOUT",
    "AccountData",
    "BackoffPolicy",
    "BacktestClient",
    "BacktestSession",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionStatus",
    "ContinueResult",
    "ContinueSendFailed",
    "Continue",
    "ControlClosed",
    "ControlFailed",
    "CreateFailed",
    "CreateSession",
    "DiscoveryCompleted",
    "DiscoveryFilter",
    "DiscoveryPaused",
    "InvalidParams",
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
    "modify_program",
    "open_account_diff_subscription",
    "open_logs_subscription",
    "open_managed_session",
    "open_parallel_session",
    "open_session_rpc",
    "open_transaction_subscription",
    "programdata_address",
]
