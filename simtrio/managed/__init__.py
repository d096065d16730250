"""Managed sessions: reconnecting control and data planes built on the sans-IO core."""

__all__: list[str] = []
