"""The exception-group helpers: what each finds in flat, nested and mixed groups."""

from __future__ import annotations

import pytest

from simtrio.core.groups import find_leaf, first_leaf, leaves, only, sole_leaf, unwrapped


class Stop(Exception):
    pass


class Failure(Exception):
    pass


def nested() -> BaseExceptionGroup[BaseException]:
    inner = BaseExceptionGroup("inner", [Stop("b"), KeyboardInterrupt()])
    return BaseExceptionGroup("outer", [Failure("a"), inner])


def test_leaves_are_depth_first_and_a_plain_exception_is_its_own_leaf() -> None:
    plain = Failure("x")
    assert list(leaves(plain)) == [plain]
    found = list(leaves(nested()))
    assert [type(leaf) for leaf in found] == [Failure, Stop, KeyboardInterrupt]
    assert isinstance(first_leaf(nested()), Failure)


def test_find_leaf_and_only() -> None:
    group = nested()
    stop = find_leaf(group, Stop)
    assert stop is not None
    assert str(stop) == "b"
    assert find_leaf(group, ValueError) is None
    assert not only(group, Stop)
    assert only(BaseExceptionGroup("g", [Stop(), BaseExceptionGroup("h", [Stop()])]), Stop)


def test_sole_leaf_prefers_one_failure_among_ignored_ones() -> None:
    failure = Failure("real")
    lone = BaseExceptionGroup("g", [BaseExceptionGroup("h", [failure])])
    assert sole_leaf(lone) is failure
    mixed = BaseExceptionGroup("g", [Stop(), failure, Stop()])
    assert sole_leaf(mixed) is None
    assert sole_leaf(mixed, prefer=Failure, ignoring=Stop) is failure
    two = BaseExceptionGroup("g", [Failure("1"), Failure("2"), Stop()])
    assert sole_leaf(two, prefer=Failure, ignoring=Stop) is None
    other = BaseExceptionGroup("g", [failure, KeyboardInterrupt()])
    assert sole_leaf(other, prefer=Failure, ignoring=Stop) is None


def test_sole_leaf_counts_one_exception_raised_twice_once() -> None:
    failure = Failure("stored, then raised by two tasks")
    twice = BaseExceptionGroup("g", [failure, BaseExceptionGroup("h", [failure])])
    assert sole_leaf(twice) is failure
    beside = BaseExceptionGroup("g", [failure, Stop(), failure])
    assert sole_leaf(beside, prefer=Failure, ignoring=Stop) is failure


def test_unwrapped_raises_the_leaf_with_its_own_context() -> None:
    failure = Failure("real")
    cause = ValueError("earlier")
    failure.__context__ = cause
    with pytest.raises(Failure) as info, unwrapped():
        raise BaseExceptionGroup("g", [failure])
    assert info.value is failure
    assert info.value.__context__ is cause


def test_unwrapped_keeps_a_group_of_several() -> None:
    with pytest.raises(BaseExceptionGroup), unwrapped():
        raise BaseExceptionGroup("g", [Failure("1"), Failure("2")])
