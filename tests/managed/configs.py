"""Managed-layer configurations shared by tests that script reconnects."""

from __future__ import annotations

from simtrio.core.backoff import BackoffPolicy
from simtrio.managed.config import ManagedConfig

QUICK_RETRY = ManagedConfig(backoff=BackoffPolicy(initial=0.25, jitter="none"))
"""Reconnects after a fixed quarter second, so scripted drops replay at once."""

FAST = ManagedConfig(
    backoff=BackoffPolicy(initial=0.25, max=1.0, jitter="none"),
    keepalive_interval=1.0,
    keepalive_miss_deadline=3.0,
    handshake_timeout=3.0,
)
"""Short retries, keep-alives and handshakes: outages are noticed and retried within seconds."""
