"""Suite-wide settings."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "simtrio",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("simtrio")
