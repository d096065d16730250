"""``scoped``: a context variable set for one block, then put back, errors included."""

from __future__ import annotations

from contextvars import ContextVar

import pytest

from simtrio.core.scoped import scoped

VAR: ContextVar[str] = ContextVar("test_scoped", default="outer")


def test_the_value_holds_inside_the_block_only() -> None:
    with scoped(VAR, "inner"):
        assert VAR.get() == "inner"
        with scoped(VAR, "innermost"):
            assert VAR.get() == "innermost"
        assert VAR.get() == "inner"
    assert VAR.get() == "outer"


def test_the_value_is_put_back_when_the_block_raises() -> None:
    with pytest.raises(KeyError), scoped(VAR, "inner"):
        raise KeyError("boom")
    assert VAR.get() == "outer"
