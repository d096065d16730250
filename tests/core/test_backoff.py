"""Backoff formula (protocol §8.3) and reconnect bookkeeping (§8.4)."""

from __future__ import annotations

import math
import random

import attrs
import pytest
from hypothesis import given, strategies as st

from simtrio.core.backoff import MIN_JITTERED_DELAY, BackoffPolicy, ReconnectState
from simtrio.errors import InvalidParams

policies = st.builds(
    BackoffPolicy,
    initial=st.floats(min_value=1e-4, max_value=100.0),
    max=st.floats(min_value=1e-4, max_value=1e4),
    multiplier=st.floats(min_value=1.0, max_value=100.0),
    jitter=st.sampled_from(["full", "none"]),
)
attempts = st.integers(min_value=0, max_value=10**12)


def test_defaults() -> None:
    policy = BackoffPolicy()
    assert attrs.astuple(policy) == (0.25, 30.0, 2.0, "full", None, 30.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": -1.0},
        {"initial": math.nan},
        {"max": 0},
        {"multiplier": 0.5},
        {"jitter": "half"},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": True},
        {"reset_after": -0.1},
    ],
)
def test_invalid_policy(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParams):
        BackoffPolicy(**kwargs)  # type: ignore[arg-type]


def test_ceilings_grow_and_cap() -> None:
    policy = BackoffPolicy(jitter="none")
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in range(10)] == [
        0.25,
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
        30.0,
    ]


@pytest.mark.parametrize("attempt", [1_000, 10**6, 10**100])
def test_huge_attempts_do_not_overflow(attempt: int) -> None:
    assert BackoffPolicy().ceiling(attempt) == 30.0
    assert BackoffPolicy(multiplier=1e300, max=1e308).ceiling(attempt) == 1e308


def test_negative_attempt_is_first_retry() -> None:
    assert BackoffPolicy(jitter="none").delay(-3, random.Random()) == 0.25


def test_multiplier_one_is_constant() -> None:
    policy = BackoffPolicy(initial=2.0, multiplier=1.0, jitter="none")
    assert {policy.delay(n, random.Random()) for n in (0, 1, 50, 10**9)} == {2.0}


def test_max_below_initial_caps_first_retry() -> None:
    assert BackoffPolicy(initial=5.0, max=1.0, jitter="none").ceiling(0) == 1.0


def test_full_jitter_is_seeded_and_floored() -> None:
    policy = BackoffPolicy()
    first = [policy.delay(n, random.Random(42)) for n in range(5)]
    again = [policy.delay(n, random.Random(42)) for n in range(5)]
    assert first == again
    tiny = BackoffPolicy(initial=0.001)
    assert all(tiny.delay(0, random.Random(s)) == MIN_JITTERED_DELAY for s in range(20))


@given(policies, attempts, attempts)
def test_ceilings_are_monotone_and_bounded(policy: BackoffPolicy, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert policy.ceiling(low) <= policy.ceiling(high) <= policy.max
    assert policy.ceiling(0) <= policy.initial


@given(policies, attempts, st.integers(min_value=0, max_value=2**32))
def test_delay_bounds(policy: BackoffPolicy, attempt: int, seed: int) -> None:
    delay = policy.delay(attempt, random.Random(seed))
    ceiling = policy.ceiling(attempt)
    if policy.jitter == "none":
        assert delay == ceiling
    else:
        assert MIN_JITTERED_DELAY <= delay <= max(ceiling, MIN_JITTERED_DELAY)


@given(policies, st.integers(min_value=0, max_value=60))
def test_ceiling_matches_formula(policy: BackoffPolicy, attempt: int) -> None:
    try:
        expected = min(policy.max, policy.initial * policy.multiplier**attempt)
    except OverflowError:
        expected = policy.max
    assert math.isclose(policy.ceiling(attempt), expected, rel_tol=1e-9)


# -- ReconnectState --------------------------------------------------------------------------

NONE = BackoffPolicy(jitter="none")
RNG = random.Random(0)


def test_first_retry_after_loss_waits_at_most_initial() -> None:
    state = ReconnectState(BackoffPolicy())
    state.attempt_started(0.0)
    state.connection_up(0.0)
    state.connection_lost(5.0)
    for seed in range(50):
        fresh = ReconnectState(BackoffPolicy())
        fresh.connection_up(0.0)
        fresh.connection_lost(1.0)
        delay = fresh.next_delay(1.0, random.Random(seed))
        assert delay is not None
        assert delay <= 0.25


def test_failed_attempts_grow_the_delay() -> None:
    state = ReconnectState(NONE)
    state.attempt_started(0.0)
    now = 0.0
    delays: list[float] = []
    for _ in range(6):
        state.attempt_failed(now)
        delay = state.next_delay(now, RNG)
        assert delay is not None
        delays.append(delay)
        now += delay
        state.attempt_started(now)
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert state.attempt == 6


def test_stable_connection_resets_the_exponent() -> None:
    state = ReconnectState(NONE)
    for _ in range(3):
        state.attempt_failed(0.0)
        state.next_delay(0.0, RNG)
    state.connection_up(10.0)
    state.connection_lost(40.0)  # up for exactly reset_after
    assert state.attempt == 0
    assert state.next_delay(40.0, RNG) == 0.25


def test_short_uptime_keeps_backing_off() -> None:
    """A flapping peer backs off like a refusing one."""
    state = ReconnectState(NONE)
    now = 0.0
    delays: list[float] = []
    for _ in range(4):
        state.connection_up(now)
        now += 1.0
        state.connection_lost(now)
        delay = state.next_delay(now, RNG)
        assert delay is not None
        delays.append(delay)
        now += delay
    assert delays == [0.25, 0.5, 1.0, 2.0]


def test_outage_budget_from_loss() -> None:
    state = ReconnectState(NONE, max_total=10.0)
    state.connection_up(0.0)
    state.connection_lost(100.0)
    assert state.deadline() == 110.0
    assert state.remaining(104.0) == 6.0
    now = 100.0
    while (delay := state.next_delay(now, RNG)) is not None:
        assert now + delay <= 110.0
        now += delay
        state.attempt_started(now)
        state.attempt_failed(now)
    assert now == 110.0  # the last delay was clipped to end exactly at the deadline
    assert state.gave_up
    assert state.next_delay(now, RNG) is None


def test_outage_budget_of_component_never_up_counts_from_first_attempt() -> None:
    state = ReconnectState(NONE, max_total=5.0)
    state.attempt_started(1.0)
    state.attempt_started(3.0)  # later attempts do not move the start
    state.attempt_failed(4.0)
    assert state.outage_start == 1.0
    assert state.next_delay(6.5, RNG) is None


def test_attempt_failed_without_start_opens_the_outage() -> None:
    state = ReconnectState(NONE, max_total=5.0)
    state.attempt_failed(2.0)
    assert state.outage_start == 2.0
    assert state.next_delay(6.0, RNG) == 0.25
    assert state.next_delay(7.5, RNG) is None


def test_healthy_connection_ends_the_outage() -> None:
    state = ReconnectState(NONE, max_total=5.0)
    state.attempt_started(0.0)
    state.attempt_failed(4.0)
    state.connection_up(4.5)
    assert state.is_up
    assert state.deadline() == 5.0  # open until the connection proves itself
    state.connection_lost(100.0)
    assert state.outage_start == 100.0
    assert state.deadline() == 105.0
    assert state.next_delay(100.0, RNG) == 0.25


def test_short_connection_does_not_end_the_outage() -> None:
    """A peer that accepts and then fails at once must not refill the budget."""
    state = ReconnectState(NONE, max_total=10.0)
    state.attempt_started(0.0)
    state.connection_up(0.1)
    state.connection_lost(5.0)  # up for less than reset_after (30 s)
    assert state.outage_start == 0.0
    assert state.next_delay(5.0, RNG) == 0.25
    state.connection_up(6.0)
    state.connection_lost(9.0)
    assert state.next_delay(9.0, RNG) == 0.5
    state.connection_up(9.5)
    state.connection_lost(10.5)
    assert state.next_delay(10.5, RNG) is None
    assert state.gave_up


def test_stalled_connection_counts_as_healthy_only_until_it_stalled() -> None:
    state = ReconnectState(NONE, max_total=100.0)
    state.attempt_started(0.0)
    state.connection_up(1.0)
    # Lost at 500 s, but it stopped making progress at 2 s: not a healthy connection.
    state.connection_lost(500.0, healthy_until=2.0)
    assert state.outage_start == 0.0
    assert state.next_delay(500.0, RNG) is None
    fresh = ReconnectState(NONE, max_total=100.0)
    fresh.connection_up(1.0)
    fresh.connection_lost(500.0, healthy_until=31.0)  # healthy for reset_after first
    assert fresh.outage_start == 500.0
    assert fresh.next_delay(500.0, RNG) == 0.25


def test_healthy_for() -> None:
    state = ReconnectState(NONE)
    assert state.healthy_for(5.0) == 0.0
    state.connection_up(1.0)
    assert state.healthy_for(5.0) == 4.0
    assert state.healthy_for(5.0, healthy_until=3.0) == 2.0
    assert state.healthy_for(5.0, healthy_until=9.0) == 4.0
    assert state.healthy_for(5.0, healthy_until=0.0) == 0.0


def test_max_retries_counts_retries_per_outage() -> None:
    state = ReconnectState(BackoffPolicy(jitter="none", max_retries=2))
    state.connection_up(0.0)
    state.connection_lost(40.0)
    assert state.next_delay(40.0, RNG) is not None
    state.attempt_failed(41.0)
    assert state.next_delay(41.0, RNG) is not None
    state.attempt_failed(42.0)
    assert state.next_delay(42.0, RNG) is None
    assert state.gave_up


def test_only_a_healthy_connection_refills_the_retry_budget() -> None:
    state = ReconnectState(BackoffPolicy(jitter="none", max_retries=2))
    state.attempt_failed(0.0)
    assert state.next_delay(0.0, RNG) is not None
    state.connection_up(1.0)
    state.connection_lost(2.0)  # short: still the same outage
    assert state.next_delay(2.0, RNG) is not None
    state.connection_up(3.0)
    state.connection_lost(2.0 + 60.0)  # healthy: a new outage
    assert state.next_delay(62.0, RNG) is not None
    state.attempt_failed(63.0)
    assert state.next_delay(63.0, RNG) is not None
    state.attempt_failed(64.0)
    assert state.next_delay(64.0, RNG) is None


def test_first_connect_budget_applies_until_a_connection_opens() -> None:
    state = ReconnectState(NONE, max_total=900.0, first_max_total=2.0)
    assert state.budget == 2.0
    state.attempt_started(0.0)
    state.attempt_failed(0.0)
    assert state.remaining(0.5) == 1.5
    now = 0.0
    while (delay := state.next_delay(now, RNG)) is not None:
        now += delay
        state.attempt_started(now)
        state.attempt_failed(now)
    assert now == 2.0

    opened = ReconnectState(NONE, max_total=900.0, first_max_total=2.0)
    opened.attempt_started(0.0)
    opened.connected()
    assert opened.budget == 900.0
    opened.attempt_failed(5.0)  # e.g. lost during the handshake
    assert opened.next_delay(5.0, RNG) == 0.25


def test_first_connect_budget_alone_and_capped() -> None:
    assert ReconnectState(NONE, first_max_total=3.0).budget == 3.0
    assert ReconnectState(NONE, max_total=1.0, first_max_total=3.0).budget == 1.0
    with pytest.raises(InvalidParams):
        ReconnectState(NONE, first_max_total=0.0)


def test_zero_retries_gives_up_at_once() -> None:
    state = ReconnectState(BackoffPolicy(max_retries=0))
    state.connection_up(0.0)
    state.connection_lost(1.0)
    assert state.next_delay(1.0, RNG) is None


def test_loss_reported_as_failure_and_vice_versa() -> None:
    state = ReconnectState(NONE)
    state.connection_up(0.0)
    state.attempt_failed(50.0)  # treated as the loss of the UP connection
    assert not state.is_up
    assert state.outage_start == 50.0
    assert state.attempt == 0  # it was stable
    state.connection_lost(51.0)  # not UP: a failed attempt, the outage keeps its start
    assert state.outage_start == 50.0


def test_next_delay_while_up_is_a_bug() -> None:
    state = ReconnectState(NONE)
    state.connection_up(0.0)
    with pytest.raises(RuntimeError):
        state.next_delay(1.0, RNG)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_invalid_max_total(bad: float) -> None:
    with pytest.raises(InvalidParams):
        ReconnectState(NONE, max_total=bad)


@given(
    st.lists(st.sampled_from(["fail", "up", "lost", "delay"]), max_size=60),
    st.floats(min_value=0.5, max_value=50.0),
)
def test_delays_never_exceed_policy_or_budget(script: list[str], max_total: float) -> None:
    policy = BackoffPolicy()
    state = ReconnectState(policy, max_total=max_total)
    rng = random.Random(1)
    now = 0.0
    state.attempt_started(now)
    for step in script:
        now += 0.1
        if step == "fail":
            state.attempt_failed(now)
        elif step == "up":
            state.connection_up(now)
        elif step == "lost":
            state.connection_lost(now)
        elif not state.is_up:
            delay = state.next_delay(now, rng)
            if delay is None:
                assert state.gave_up
                start = state.outage_start
                assert start is not None
                # The budget is spent: the state computes ``start + max_total - now <= 0``;
                # that sum and this difference can round apart in the last bit.
                assert now - start >= max_total - 1e-9
                return
            assert 0 <= delay <= policy.max
            deadline = state.deadline()
            assert deadline is not None
            assert now + delay <= deadline + 1e-9


_UP_SPANS = st.floats(min_value=0.0, max_value=29.9)


@given(
    st.lists(
        st.one_of(st.just(("refused", 0.0)), st.tuples(st.just("up"), _UP_SPANS)),
        min_size=1,
        max_size=20,
    ),
    st.floats(min_value=0.5, max_value=120.0),
    st.integers(0, 2**32),
)
def test_any_failure_mix_gives_up_within_the_budget(
    mix: list[tuple[str, float]], max_total: float, seed: int
) -> None:
    """Refused attempts and connections that never stay up reset_after: always a give-up.

    The loop replays ``mix`` over and over (as a hostile peer would), and must give up no later
    than ``reset_after`` past the end of the budget, counted from the first attempt.
    """
    policy = BackoffPolicy()
    state = ReconnectState(policy, max_total=max_total)
    rng = random.Random(seed)
    now = 0.0
    for step in range(100_000):
        kind, span = mix[step % len(mix)]
        state.attempt_started(now)
        if kind == "refused":
            state.attempt_failed(now)
        else:
            state.connected()
            state.connection_up(now)
            now += span
            state.connection_lost(now)
        delay = state.next_delay(now, rng)
        if delay is None:
            break
        now += delay
    else:
        pytest.fail("never gave up")
    assert now <= max_total + policy.reset_after + 1e-6
