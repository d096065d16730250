"""The wire protocol as data: types, the control-plane codec, data-plane JSON-RPC, compression.

Nothing here does I/O or imports trio; both the clients and the reference server build on it.
"""

from __future__ import annotations

from simtrio.wire.codec import (
    decode_available_ranges as decode_available_ranges,
)
from simtrio.wire.codec import (
    decode_backtest_error as decode_backtest_error,
)
from simtrio.wire.codec import (
    decode_frame as decode_frame,
)
from simtrio.wire.codec import (
    decode_request as decode_request,
)
from simtrio.wire.codec import (
    decode_response as decode_response,
)
from simtrio.wire.codec import (
    encode as encode,
)
from simtrio.wire.codec import (
    encode_available_ranges as encode_available_ranges,
)
from simtrio.wire.codec import (
    encode_backtest_error as encode_backtest_error,
)
from simtrio.wire.codec import (
    encode_response as encode_response,
)
from simtrio.wire.compression import (
    ZstdStreamDecoder as ZstdStreamDecoder,
)
from simtrio.wire.compression import (
    ZstdStreamEncoder as ZstdStreamEncoder,
)
from simtrio.wire.rpc import (
    ACCOUNT_DIFF_NOTIFICATION as ACCOUNT_DIFF_NOTIFICATION,
)
from simtrio.wire.rpc import (
    ACCOUNT_DIFF_SUBSCRIBE as ACCOUNT_DIFF_SUBSCRIBE,
)
from simtrio.wire.rpc import (
    ACCOUNT_DIFF_UNSUBSCRIBE as ACCOUNT_DIFF_UNSUBSCRIBE,
)
from simtrio.wire.rpc import (
    INVALID_PARAMS as INVALID_PARAMS,
)
from simtrio.wire.rpc import (
    METHOD_NOT_FOUND as METHOD_NOT_FOUND,
)
from simtrio.wire.rpc import (
    SUBSCRIPTION_COMPLETE as SUBSCRIPTION_COMPLETE,
)
from simtrio.wire.rpc import (
    TRANSACTION_NOTIFICATION as TRANSACTION_NOTIFICATION,
)
from simtrio.wire.rpc import (
    TRANSACTION_SUBSCRIBE as TRANSACTION_SUBSCRIBE,
)
from simtrio.wire.rpc import (
    TRANSACTION_UNSUBSCRIBE as TRANSACTION_UNSUBSCRIBE,
)
from simtrio.wire.rpc import (
    AccountDiffNotification as AccountDiffNotification,
)
from simtrio.wire.rpc import (
    InvalidRpcRequest as InvalidRpcRequest,
)
from simtrio.wire.rpc import (
    RpcContext as RpcContext,
)
from simtrio.wire.rpc import (
    RpcMessage as RpcMessage,
)
from simtrio.wire.rpc import (
    RpcRequest as RpcRequest,
)
from simtrio.wire.rpc import (
    Subscribe as Subscribe,
)
from simtrio.wire.rpc import (
    SubscribeAck as SubscribeAck,
)
from simtrio.wire.rpc import (
    SubscribeError as SubscribeError,
)
from simtrio.wire.rpc import (
    SubscriptionComplete as SubscriptionComplete,
)
from simtrio.wire.rpc import (
    TransactionNotification as TransactionNotification,
)
from simtrio.wire.rpc import (
    UnknownRpcMessage as UnknownRpcMessage,
)
from simtrio.wire.rpc import (
    UnknownRpcRequest as UnknownRpcRequest,
)
from simtrio.wire.rpc import (
    Unsubscribe as Unsubscribe,
)
from simtrio.wire.rpc import (
    decode_rpc as decode_rpc,
)
from simtrio.wire.rpc import (
    decode_rpc_request as decode_rpc_request,
)
from simtrio.wire.rpc import (
    decode_subscribe_request as decode_subscribe_request,
)
from simtrio.wire.rpc import (
    encode_rpc as encode_rpc,
)
from simtrio.wire.rpc import (
    encode_unsubscribe_reply as encode_unsubscribe_reply,
)
from simtrio.wire.types import (
    AccountData as AccountData,
)
from simtrio.wire.types import (
    AdvanceSlotFailed as AdvanceSlotFailed,
)
from simtrio.wire.types import (
    AgentStatsReport as AgentStatsReport,
)
from simtrio.wire.types import (
    AttachBacktestSession as AttachBacktestSession,
)
from simtrio.wire.types import (
    AttachParallelControlSessionV2 as AttachParallelControlSessionV2,
)
from simtrio.wire.types import (
    AvailableRange as AvailableRange,
)
from simtrio.wire.types import (
    BacktestError as BacktestError,
)
from simtrio.wire.types import (
    BacktestRequest as BacktestRequest,
)
from simtrio.wire.types import (
    BacktestResponse as BacktestResponse,
)
from simtrio.wire.types import (
    BacktestStatus as BacktestStatus,
)
from simtrio.wire.types import (
    BundleNotFound as BundleNotFound,
)
from simtrio.wire.types import (
    ClerkError as ClerkError,
)
from simtrio.wire.types import (
    CloseBacktestSession as CloseBacktestSession,
)
from simtrio.wire.types import (
    CloseSessionRequestV1 as CloseSessionRequestV1,
)
from simtrio.wire.types import (
    Completed as Completed,
)
from simtrio.wire.types import (
    ContinueParams as ContinueParams,
)
from simtrio.wire.types import (
    ContinueSessionRequestV1 as ContinueSessionRequestV1,
)
from simtrio.wire.types import (
    ContinueToParams as ContinueToParams,
)
from simtrio.wire.types import (
    ContinueToSessionRequestV1 as ContinueToSessionRequestV1,
)
from simtrio.wire.types import (
    CreateBacktestSessionRequest as CreateBacktestSessionRequest,
)
from simtrio.wire.types import (
    DiscoveryBatch as DiscoveryBatch,
)
from simtrio.wire.types import (
    DiscoveryBatchEvent as DiscoveryBatchEvent,
)
from simtrio.wire.types import (
    DiscoveryFilter as DiscoveryFilter,
)
from simtrio.wire.types import (
    EncodedBinary as EncodedBinary,
)
from simtrio.wire.types import (
    Error as Error,
)
from simtrio.wire.types import (
    FinalizeSlotFailed as FinalizeSlotFailed,
)
from simtrio.wire.types import (
    InitializingSysvarsFailed as InitializingSysvarsFailed,
)
from simtrio.wire.types import (
    Internal as Internal,
)
from simtrio.wire.types import (
    InvalidAccountEncoding as InvalidAccountEncoding,
)
from simtrio.wire.types import (
    InvalidAccountOwner as InvalidAccountOwner,
)
from simtrio.wire.types import (
    InvalidAccountPubkey as InvalidAccountPubkey,
)
from simtrio.wire.types import (
    InvalidBlockhashFormat as InvalidBlockhashFormat,
)
from simtrio.wire.types import (
    InvalidRequest as InvalidRequest,
)
from simtrio.wire.types import (
    InvalidTransactionEncoding as InvalidTransactionEncoding,
)
from simtrio.wire.types import (
    InvalidTransactionFormat as InvalidTransactionFormat,
)
from simtrio.wire.types import (
    JsonValue as JsonValue,
)
from simtrio.wire.types import (
    NoMoreBlocks as NoMoreBlocks,
)
from simtrio.wire.types import (
    NoProducedBlocksInRange as NoProducedBlocksInRange,
)
from simtrio.wire.types import (
    ParallelSessionAttachedV2 as ParallelSessionAttachedV2,
)
from simtrio.wire.types import (
    Paused as Paused,
)
from simtrio.wire.types import (
    PausedEvent as PausedEvent,
)
from simtrio.wire.types import (
    ProgramExecuted as ProgramExecuted,
)
from simtrio.wire.types import (
    ReadyForContinue as ReadyForContinue,
)
from simtrio.wire.types import (
    ResumeAttachedSession as ResumeAttachedSession,
)
from simtrio.wire.types import (
    SessionAttached as SessionAttached,
)
from simtrio.wire.types import (
    SessionCreated as SessionCreated,
)
from simtrio.wire.types import (
    SessionEvent as SessionEvent,
)
from simtrio.wire.types import (
    SessionEventV1 as SessionEventV1,
)
from simtrio.wire.types import (
    SessionEventV2 as SessionEventV2,
)
from simtrio.wire.types import (
    SessionNameTaken as SessionNameTaken,
)
from simtrio.wire.types import (
    SessionNotFound as SessionNotFound,
)
from simtrio.wire.types import (
    SessionOwnerMismatch as SessionOwnerMismatch,
)
from simtrio.wire.types import (
    SessionOwnershipBusy as SessionOwnershipBusy,
)
from simtrio.wire.types import (
    SessionsCreated as SessionsCreated,
)
from simtrio.wire.types import (
    SessionsCreatedV2 as SessionsCreatedV2,
)
from simtrio.wire.types import (
    SessionSummary as SessionSummary,
)
from simtrio.wire.types import (
    SimulationError as SimulationError,
)
from simtrio.wire.types import (
    SlotNotification as SlotNotification,
)
from simtrio.wire.types import (
    Status as Status,
)
from simtrio.wire.types import (
    Success as Success,
)
from simtrio.wire.types import (
    UnknownBacktestError as UnknownBacktestError,
)
from simtrio.wire.types import (
    UnknownDiscoveryFilter as UnknownDiscoveryFilter,
)
from simtrio.wire.types import (
    UnknownRequest as UnknownRequest,
)
from simtrio.wire.types import (
    UnknownResponse as UnknownResponse,
)
from simtrio.wire.types import (
    UnknownSessionEvent as UnknownSessionEvent,
)
from simtrio.wire.types import (
    kind_key as kind_key,
)
from simtrio.wire.urls import (
    http_base_from_ws_url as http_base_from_ws_url,
)
from simtrio.wire.urls import (
    http_to_ws_url as http_to_ws_url,
)
from simtrio.wire.urls import (
    normalize_control_url as normalize_control_url,
)
from simtrio.wire.urls import (
    resolve_rpc_url as resolve_rpc_url,
)

__all__ = [
    "ACCOUNT_DIFF_NOTIFICATION",
    "ACCOUNT_DIFF_SUBSCRIBE",
    "ACCOUNT_DIFF_UNSUBSCRIBE",
    "AccountData",
    "AccountDiffNotification",
    "AdvanceSlotFailed",
    "AgentStatsReport",
    "AttachBacktestSession",
    "AttachParallelControlSessionV2",
    "AvailableRange",
    "BacktestError",
    "BacktestRequest",
    "BacktestResponse",
    "BacktestStatus",
    "BundleNotFound",
    "ClerkError",
    "CloseBacktestSession",
    "CloseSessionRequestV1",
    "Completed",
    "ContinueParams",
    "ContinueSessionRequestV1",
    "ContinueToParams",
    "ContinueToSessionRequestV1",
    "CreateBacktestSessionRequest",
    "DiscoveryBatch",
    "DiscoveryBatchEvent",
    "DiscoveryFilter",
    "EncodedBinary",
    "Error",
    "FinalizeSlotFailed",
    "INVALID_PARAMS",
    "InitializingSysvarsFailed",
    "Internal",
    "InvalidAccountEncoding",
    "InvalidAccountOwner",
    "InvalidAccountPubkey",
    "InvalidBlockhashFormat",
    "InvalidRequest",
    "InvalidRpcRequest",
    "InvalidTransactionEncoding",
    "InvalidTransactionFormat",
    "JsonValue",
    "METHOD_NOT_FOUND",
    "NoMoreBlocks",
    "NoProducedBlocksInRange",
    "ParallelSessionAttachedV2",
    "Paused",
    "PausedEvent",
    "ProgramExecuted",
    "ReadyForContinue",
    "ResumeAttachedSession",
    "RpcContext",
    "RpcMessage",
    "RpcRequest",
    "SUBSCRIPTION_COMPLETE",
    "SessionAttached",
    "SessionCreated",
    "SessionEvent",
    "SessionEventV1",
    "SessionEventV2",
    "SessionNameTaken",
    "SessionNotFound",
    "SessionOwnerMismatch",
    "SessionOwnershipBusy",
    "SessionSummary",
    "SessionsCreated",
    "SessionsCreatedV2",
    "SimulationError",
    "SlotNotification",
    "Status",
    "Subscribe",
    "SubscribeAck",
    "SubscribeError",
    "SubscriptionComplete",
    "Success",
    "TRANSACTION_NOTIFICATION",
    "TRANSACTION_SUBSCRIBE",
    "TRANSACTION_UNSUBSCRIBE",
    "TransactionNotification",
    "UnknownBacktestError",
    "UnknownDiscoveryFilter",
    "UnknownRequest",
    "UnknownResponse",
    "UnknownRpcMessage",
    "UnknownRpcRequest",
    "UnknownSessionEvent",
    "Unsubscribe",
    "ZstdStreamDecoder",
    "ZstdStreamEncoder",
    "decode_available_ranges",
    "decode_backtest_error",
    "decode_frame",
    "decode_request",
    "decode_response",
    "decode_rpc",
    "decode_rpc_request",
    "decode_subscribe_request",
    "encode",
    "encode_available_ranges",
    "encode_backtest_error",
    "encode_response",
    "encode_rpc",
    "encode_unsubscribe_reply",
    "http_base_from_ws_url",
    "http_to_ws_url",
    "kind_key",
    "normalize_control_url",
    "resolve_rpc_url",
]
