"""Seeded chaos runs: managed sessions with faults injected on both planes.

:func:`run_chaos` starts the reference server with a seeded fault plan (abrupt drops, stalls
with a finite length, half-open connections that stall for good, malformed Text, oversize
messages and corrupt compressed frames, one per faulty connection -- a stall the client rides
out also gets a later drop -- spread over many connection indexes of the control and the data
plane), runs ``open_parallel_session`` over a range that splits into ``sub_sessions``
sub-sessions (or, with ``single``, ``open_managed_session`` over one range of ``slots``
slots), subscribes every (sub-)session to account diffs of two programs (one manager, two
subscriptions) and transactions of a third, opens a standalone transaction subscription on
the first one's endpoint before it starts, and drives each with ``Continue(k)`` until
``Completed``. It then compares everything delivered with a fault-free run of the same chain.

The invariant: every notification of the fault-free run arrives, or the run says so -- a
(sub-)session or a standalone subscription that raised is *explicit*, and the notifications it
did not deliver are not counted as lost; a ``Completed`` (or a standalone stream that ended)
with anything missing is silent loss and fails the run. A (sub-)session must not fail for
any other reason than a data-plane gap (protocol: a re-subscription that needs events the
server no longer keeps); a standalone subscription, which cannot hold its session back, may
also give up.

What is checked, and what is tolerated:

* Control events of each sub-session must equal the fault-free sequence exactly, except that a
  ``ReadyForContinue`` may repeat right after itself. That is protocol §6.8: a continue written
  into a connection that then died never reached the server; on the next attach the server
  re-announces the readiness as a new event and the driver continues again. Each re-announcement
  needs an attach, so a sub-session may see at most one per control reconnect; more count as
  duplicated. (A readiness wrongly delivered twice would not hide behind this rule: the driver
  would continue twice, and the second continue's ``ErrorEvent`` or extra step shows up.) Nothing
  else may differ: any other extra occurrence counts as duplicated, a missing one as lost, and
  an event that arrives before one the fault-free run had earlier counts as out of order.
* Notifications are checked per subscription (account diffs per owning program, transactions of
  their one program). Every fault-free notification must arrive (else lost), no new one may
  arrive before one that preceded it (out of order), and the only repeats allowed are those of
  the replay boundary (protocol §9.7: a re-subscription replays from the subscription's last
  delivered slot inclusive, so notifications of exactly that slot come again). A repeat of an
  older slot counts as duplicated; a notification the fault-free run never had, as mismatched.

Run ``python -m tests.managed.chaos [--seeds N] [--faults N]`` for new random seeds; every row
names its seed, so ``--seed S`` reproduces it.
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import random
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import attrs
import orjson
import trio
import trio.testing

import simtrio.server
from simtrio import events
from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import SimtrioError
from simtrio.managed.config import ManagedConfig
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.managed.session import ManagedSession, open_managed_session
from simtrio.managed.standalone import open_transaction_subscription
from simtrio.params import Continue, CreateSession
from simtrio.server import FaultKind, FaultPlan, Faults, Plane
from tests.managed.driving import without_reannounced
from tests.support.inmemory import reference_servers_in_memory

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ChaosReport",
    "Layout",
    "Observed",
    "chaos_config",
    "chaos_plan",
    "main",
    "run_chaos",
    "run_layout",
]

logger = logging.getLogger(__name__)

KEY: Final = "chaos-key"
START_SLOT: Final = 200_000
LIMIT: Final = 64 * 1024
"""Client message limit; oversize faults send one byte more."""
CHAIN_SEED: Final = 7
MOCK_TIME_LIMIT: Final = 3_000.0
"""Mock seconds a run may take before it counts as hung."""

StreamKey: TypeAlias = tuple[str, str]
"""(kind, program id) of one subscription."""


STANDALONE: Final = -1
"""The key of the standalone subscription's stream in :attr:`Observed.data`."""

GAP_MARK: Final = "data-plane gap"
"""What the message of a reported data-plane gap contains."""


@attrs.frozen
class Layout:
    """What a run looks like apart from its faults; equal layouts give equal fault-free runs."""

    sub_sessions: int = 50
    slots: int = 10
    """Slots per sub-session (the server's bundle size)."""
    chain_seed: int = CHAIN_SEED
    single: bool = False
    """One managed session over ``slots`` slots instead of a parallel session."""

    @property
    def end_slot(self) -> int:
        if self.single:
            return START_SLOT + self.slots - 1
        return START_SLOT + self.sub_sessions * self.slots - 1


@attrs.frozen
class Observed:
    """What the drivers saw, per sub-session (keyed by its index in the create order)."""

    control: Mapping[int, tuple[events.Event, ...]]
    data: Mapping[int, Mapping[StreamKey, tuple[tuple[int, bytes], ...]]]
    """Per sub-session and subscription: (slot, canonical bytes) of each notification."""
    failures: Mapping[int, str]
    faults_injected: Mapping[str, int]
    connections: Mapping[str, int]


@attrs.frozen
class ChaosReport:
    """The outcome of one seeded run (counts over every sub-session and subscription)."""

    seed: int
    sub_sessions: int
    faults_planned: int
    faults_injected: int
    faults_by_kind: Mapping[str, int]
    connections: Mapping[str, int]
    control_events_checked: int
    data_notifications_checked: int
    lost: int
    duplicated: int
    out_of_order: int
    mismatched: int
    reannounced: int
    """Tolerated ``ReadyForContinue`` repeats (§6.8)."""
    explicit: int
    """Notifications not delivered by a (sub-)session or standalone that raised (said so)."""
    gaps: int
    """(Sub-)sessions and standalone subscriptions that raised a data-plane gap."""
    boundary_duplicates: int
    """Tolerated repeats of a replay-boundary slot (§9.7)."""
    failures: Mapping[int, str]
    mock_seconds: float
    wall_seconds: float

    @property
    def events_checked(self) -> int:
        return self.control_events_checked + self.data_notifications_checked

    @property
    def unexpected_failures(self) -> dict[int, str]:
        """Failures other than a reported gap (a standalone subscription may give up)."""
        return {
            index: failure
            for index, failure in self.failures.items()
            if GAP_MARK not in failure and index != STANDALONE
        }

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.out_of_order
            or self.mismatched
            or self.unexpected_failures
        )


# --------------------------------------------------------------------------------------------
# Configuration and fault plan
# --------------------------------------------------------------------------------------------


def chaos_config(seed: int) -> ManagedConfig:
    """Short timeouts, so stalls and reconnects cost little (mock) time."""
    return ManagedConfig(
        connect_timeout=5.0,
        handshake_timeout=3.0,
        keepalive_interval=1.0,
        keepalive_miss_deadline=3.0,
        data_pong_timeout=1.5,
        graceful_close_timeout=1.0,
        completion_drain_timeout=120.0,
        max_message_size=LIMIT,
        backoff=BackoffPolicy(initial=0.1, max=2.0),
        rng_seed=seed,
    )


HALF_OPEN: Final = "half-open"
"""A stall that never ends: the peer is gone but TCP stays open."""

_CONTROL_KINDS: Final[tuple[tuple[FaultKind | str, int], ...]] = (
    (FaultKind.DROP, 35),
    (FaultKind.STALL, 25),
    (HALF_OPEN, 5),
    (FaultKind.MALFORMED, 20),
    (FaultKind.OVERSIZE, 20),
)
_DATA_KINDS: Final[tuple[tuple[FaultKind | str, int], ...]] = (
    (FaultKind.DROP, 25),
    (FaultKind.STALL, 20),
    (HALF_OPEN, 10),
    (FaultKind.MALFORMED, 15),
    (FaultKind.CORRUPT, 25),
    (FaultKind.OVERSIZE, 15),
)
CONTROL_SHARE: Final = 0.2
"""Share of the planned faults put on control connections."""
PLAN_SURPLUS: Final = 1.1
"""Faults planned per fault wanted: a few never fire (their connection ends first)."""


def _fault(
    rng: random.Random, kind: FaultKind | str, at: int, config: ManagedConfig, spread: int
) -> Faults:
    if kind == HALF_OPEN:
        return Faults(stall_after=at)
    match kind:
        case FaultKind.DROP:
            return Faults(drop_after=at)
        case FaultKind.STALL:
            deadline = config.keepalive_miss_deadline
            stall_for = round(rng.uniform(deadline / 6, 3 * deadline), 3)
            if stall_for < deadline:
                # The client rides this one out on the same connection; drop it later on, so
                # that the next connection index (and its fault) is still reached.
                return Faults(
                    stall_after=at, stall_for=stall_for, drop_after=at + rng.randint(1, spread)
                )
            return Faults(stall_after=at, stall_for=stall_for)
        case FaultKind.MALFORMED:
            return Faults(malformed_at=at)
        case FaultKind.OVERSIZE:
            return Faults(oversize_at=at, oversize_bytes=LIMIT + 1)
        case FaultKind.CORRUPT:
            return Faults(corrupt_compressed_at=at)
        case _:
            raise ValueError(f"no chaos fault of kind {kind}")


def _kind(rng: random.Random, table: Sequence[tuple[FaultKind | str, int]]) -> FaultKind | str:
    kinds = [kind for kind, _ in table]
    weights = [weight for _, weight in table]
    return rng.choices(kinds, weights)[0]


def chaos_plan(seed: int, faults: int, layout: Layout, config: ManagedConfig) -> FaultPlan:
    """``faults`` faulty connection indexes, drawn from ``seed``.

    Control connections after the first are attaches, so their triggers are early (a replay plus
    live events). The first control connection carries the create handshake (four messages
    per sub-session and ``sessionsCreatedV2``): one seed in four puts its fault inside it, so the
    create is re-sent on the next connection, whose fault is then placed after its handshake.
    Data triggers fall within the first dozen messages, so nearly every one fires.
    """
    rng = random.Random(f"simtrio-chaos|{seed}")
    control_count = round(faults * CONTROL_SHARE)
    create_len = 4 if layout.single else 4 * layout.sub_sessions + 1
    control: dict[int, Faults] = {}
    in_create = rng.random() < 0.25
    for index in range(1, control_count + 1):
        kind = _kind(rng, _CONTROL_KINDS)
        if index == 1 and in_create:
            at = rng.randint(1, create_len)
        elif index == 1 or (index == 2 and in_create):
            at = rng.randint(create_len + 1, create_len + 2 * layout.sub_sessions)
        else:
            at = rng.randint(1, 40)
        control[index] = _fault(rng, kind, at, config, 40)
    data: dict[int, Faults] = {}
    for index in range(1, faults - control_count + 1):
        kind = _kind(rng, _DATA_KINDS)
        # Mostly early; for long sessions one in four well into the stream, where a stall
        # leaves the server far ahead unless the client holds it back.
        late = layout.slots >= 100 and rng.random() < 0.25
        at = rng.randint(13, 4 * layout.slots) if late else rng.randint(1, 12)
        data[index] = _fault(rng, kind, at, config, 10)
    return FaultPlan(control_connections=control, data_connections=data)


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def _canonical(event: events.AccountDiff | events.Transaction) -> tuple[StreamKey, int, bytes]:
    if isinstance(event, events.AccountDiff):
        diff = event.notification
        account: Any = diff.post if diff.post is not None else diff.pre
        owner = account["owner"] if isinstance(account, dict) else "?"
        raw = [diff.slot, diff.account, diff.signature, diff.pre, diff.post]
        return ("diff", str(owner)), diff.slot, orjson.dumps(raw)
    tx = event.notification
    return ("tx", ""), tx.slot, orjson.dumps([tx.slot, tx.transaction])


async def _drive(
    sub: ParallelSubSession | ManagedSession,
    step: int,
    control: list[events.Event],
    data: dict[StreamKey, list[tuple[int, bytes]]],
) -> None:
    async for event in sub.events():
        if isinstance(event, events.AccountDiff | events.Transaction):
            key, slot, raw = _canonical(event)
            data.setdefault(key, []).append((slot, raw))
            continue
        control.append(event)
        if isinstance(event, events.ReadyForContinue):
            await sub.send_continue(Continue(step))


class _Run:
    """What one run's drivers and standalone subscription collect."""

    def __init__(self, config: ManagedConfig, programs: Sequence[str]) -> None:
        self.config = config
        self.programs = programs
        self.control: dict[int, list[events.Event]] = {}
        self.data: dict[int, dict[StreamKey, list[tuple[int, bytes]]]] = {}
        self.failures: dict[int, str] = {}

    def subscribe(self, sub: ParallelSubSession | ManagedSession) -> None:
        sub.subscribe_account_diffs(self.programs[:2])
        sub.subscribe_transactions(self.programs[2:3])
        sub.set_completion_drain_timeout(self.config.completion_drain_timeout)

    async def drive(
        self, index: int, sub: ParallelSubSession | ManagedSession, up: trio.Event
    ) -> None:
        seen = self.control[index] = []
        streams = self.data[index] = {}
        await up.wait()
        try:
            await _drive(sub, 2 + index % 3, seen, streams)
        except SimtrioError as exc:
            self.failures[index] = f"{type(exc).__name__}: {exc}"

    async def standalone(self, rpc_endpoint: str, up: trio.Event) -> None:
        """A standalone transaction subscription, up before its session takes a step."""
        streams = self.data[STANDALONE] = {}
        try:
            async with open_transaction_subscription(
                rpc_endpoint, self.programs[2:3], config=self.config
            ) as sub:
                await sub.wait_up()
                up.set()
                async for event in sub.notifications:
                    key, slot, raw = _canonical(event)
                    streams.setdefault(("standalone", key[0]), []).append((slot, raw))
        except SimtrioError as exc:
            self.failures[STANDALONE] = f"{type(exc).__name__}: {exc}"
        finally:
            up.set()


async def _run_parallel(server: simtrio.server.ReferenceServer, layout: Layout, run: _Run) -> None:
    create = CreateSession(START_SLOT, end_slot=layout.end_slot, disconnect_timeout_secs=300)
    async with open_parallel_session(server.url, KEY, create, config=run.config) as parallel:
        subs = parallel.take_sub_sessions()
        if len(subs) != layout.sub_sessions:
            raise AssertionError(f"expected {layout.sub_sessions} sub-sessions, got {len(subs)}")
        async with trio.open_nursery() as nursery:
            up = trio.Event()
            nursery.start_soon(run.standalone, subs[0].session_info.rpc_endpoint, up)
            ready = trio.Event()
            ready.set()
            for index, sub in enumerate(subs):
                run.subscribe(sub)
                nursery.start_soon(run.drive, index, sub, up if index == 0 else ready)


async def _run_single(server: simtrio.server.ReferenceServer, layout: Layout, run: _Run) -> None:
    create = CreateSession(START_SLOT, end_slot=layout.end_slot, disconnect_timeout_secs=300)
    async with (
        open_managed_session(server.url, KEY, create, config=run.config) as session,
        trio.open_nursery() as nursery,
    ):
        up = trio.Event()
        nursery.start_soon(run.standalone, session.session_info.rpc_endpoint, up)
        run.subscribe(session)
        nursery.start_soon(run.drive, 0, session, up)


async def run_layout(layout: Layout, plan: FaultPlan, config: ManagedConfig) -> Observed:
    """Run the layout once against a server with ``plan``; must run under trio."""
    bundle = layout.slots if not layout.single else max(100, layout.slots)
    # In memory, as the suite serves every test on the virtual clock; also when run as a script.
    with reference_servers_in_memory():
        async with simtrio.server.serve(
            api_key=KEY, seed=layout.chain_seed, bundle_size=bundle, faults=plan
        ) as server:
            run = _Run(config, server.config.program_ids)
            with trio.fail_after(MOCK_TIME_LIMIT):
                if layout.single:
                    await _run_single(server, layout, run)
                else:
                    await _run_parallel(server, layout, run)
            injected = {f"{plane}:{kind}": n for (plane, kind), n in server.faults_injected.items()}
            connections = {str(plane): server.connection_count(plane) for plane in Plane}
    return Observed(
        control={i: tuple(evs) for i, evs in run.control.items()},
        data={i: {k: tuple(v) for k, v in streams.items()} for i, streams in run.data.items()},
        failures=run.failures,
        faults_injected=injected,
        connections=connections,
    )


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


@attrs.define
class _Tally:
    control_checked: int = 0
    data_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    mismatched: int = 0
    reannounced: int = 0
    boundary: int = 0
    explicit: int = 0


def _numbered(items: Sequence[events.Event]) -> list[tuple[events.Event, int]]:
    """Each event with its occurrence number, so repeated values become distinct keys."""
    seen: collections.Counter[events.Event] = collections.Counter()
    out: list[tuple[events.Event, int]] = []
    for item in items:
        seen[item] += 1
        out.append((item, seen[item]))
    return out


def check_control(
    seen: Sequence[events.Event],
    expected: Sequence[events.Event],
    tally: _Tally,
    *,
    attaches: int,
) -> None:
    """Compare one sub-session's control events, tolerating only §6.8 readiness repeats.

    ``attaches`` bounds the repeats: the server re-announces at most once per attach.
    """
    collapsed, repeats = without_reannounced(seen)
    tally.reannounced += min(repeats, attaches)
    tally.duplicated += max(0, repeats - attaches)
    tally.control_checked += len(seen)
    position = {key: i for i, key in enumerate(_numbered(expected))}
    delivered: set[tuple[events.Event, int]] = set()
    highest = -1
    for key in _numbered(collapsed):
        where = position.get(key)
        if where is None:
            tally.duplicated += 1
            continue
        delivered.add(key)
        if where < highest:
            tally.out_of_order += 1
        highest = max(highest, where)
    tally.lost += len(position) - len(delivered)


def check_stream(
    seen: Sequence[tuple[int, bytes]],
    expected: Sequence[tuple[int, bytes]],
    tally: _Tally,
    *,
    raised: bool = False,
) -> None:
    """Compare one subscription's notifications, tolerating only replay-boundary repeats.

    ``raised``: its (sub-)session or standalone subscription raised, so what it did not
    deliver counts as explicit, not as lost.
    """
    position = {raw: i for i, (_, raw) in enumerate(expected)}
    delivered: set[bytes] = set()
    highest = -1
    boundary: int | None = None
    for slot, raw in seen:
        tally.data_checked += 1
        where = position.get(raw)
        if where is None:
            tally.mismatched += 1
        elif raw in delivered:
            if slot == boundary:
                tally.boundary += 1
            else:
                tally.duplicated += 1
        else:
            delivered.add(raw)
            if where < highest:
                tally.out_of_order += 1
            highest = max(highest, where)
            boundary = slot if boundary is None else max(boundary, slot)
    if raised:
        tally.explicit += len(position) - len(delivered)
    else:
        tally.lost += len(position) - len(delivered)


def compare(observed: Observed, reference: Observed) -> _Tally:
    tally = _Tally()
    attaches = max(0, observed.connections["control"] - 1)
    for index, expected in reference.control.items():
        if index in observed.failures:
            continue  # it raised: its events stop early, and that was said
        check_control(observed.control.get(index, ()), expected, tally, attaches=attaches)
    for index, streams in reference.data.items():
        got = observed.data.get(index, {})
        raised = index in observed.failures
        for key, expected_items in streams.items():
            check_stream(got.get(key, ()), expected_items, tally, raised=raised)
        for key, extra in got.items():
            if key not in streams:
                tally.data_checked += len(extra)
                tally.mismatched += len(extra)
    return tally


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

_references: dict[Layout, Observed] = {}


async def reference_run(layout: Layout) -> Observed:
    """The fault-free run of a layout (computed once per process)."""
    cached = _references.get(layout)
    if cached is None:
        cached = await run_layout(layout, FaultPlan(), chaos_config(0))
        if cached.failures:
            raise AssertionError(f"the fault-free run failed: {dict(cached.failures)}")
        if not cached.data.get(STANDALONE):
            raise AssertionError("the fault-free run's standalone subscription saw nothing")
        for index, seen in cached.control.items():
            if not seen or seen[-1] != events.Completed(None, None):
                raise AssertionError(f"sub-session {index} of the fault-free run did not complete")
        _references[layout] = cached
    return cached


async def run_chaos(
    seed: int,
    *,
    sub_sessions: int = 50,
    faults: int,
    slots: int = 10,
    chain_seed: int = CHAIN_SEED,
    single: bool = False,
) -> ChaosReport:
    """One seeded chaos run compared with the fault-free run; must run under a MockClock.

    ``faults`` is the number to inject. A tenth more are planned, one per faulty connection (a
    short stall comes with a later drop on the same connection), because a fault whose
    connection ends before its trigger never fires; ``faults_injected`` counts the faults that
    took effect, as the server saw them, and normally ends up slightly above ``faults``.
    """
    layout = Layout(sub_sessions=sub_sessions, slots=slots, chain_seed=chain_seed, single=single)
    reference = await reference_run(layout)
    config = chaos_config(seed)
    plan = chaos_plan(seed, math.ceil(faults * PLAN_SURPLUS), layout, config)
    wall = time.perf_counter()
    started = trio.current_time()
    observed = await run_layout(layout, plan, config)
    mock_seconds = trio.current_time() - started
    wall_seconds = time.perf_counter() - wall
    tally = compare(observed, reference)
    return ChaosReport(
        seed=seed,
        sub_sessions=sub_sessions,
        faults_planned=faults,
        faults_injected=sum(observed.faults_injected.values()),
        faults_by_kind=dict(sorted(observed.faults_injected.items())),
        connections=observed.connections,
        control_events_checked=tally.control_checked,
        data_notifications_checked=tally.data_checked,
        lost=tally.lost,
        duplicated=tally.duplicated,
        out_of_order=tally.out_of_order,
        mismatched=tally.mismatched,
        reannounced=tally.reannounced,
        explicit=tally.explicit,
        gaps=sum(GAP_MARK in failure for failure in observed.failures.values()),
        boundary_duplicates=tally.boundary,
        failures=observed.failures,
        mock_seconds=mock_seconds,
        wall_seconds=wall_seconds,
    )


_HEADER: Final = (
    f"{'seed':>10} {'layout':>9} {'faults':>7} {'events':>8} {'lost':>5} {'dup':>5}"
    f" {'order':>6} {'mism':>5} {'fail':>5} {'gaps':>5} {'expl':>6} {'ready+':>6} {'bound':>6}"
    f" {'conns c/d':>10} {'wall s':>7}"
)


_LEGEND: Final = (
    "faults: injected (server count); events: control events + notifications checked;"
    " lost / dup / order / mism: must be 0 (lost = missing behind a Completed or a stream"
    " that ended without an error); fail: (sub-)sessions or standalone subscriptions that"
    " raised, gaps: of them, reported data-plane gaps; expl: notifications those did not"
    " deliver; ready+ / bound: tolerated readiness repeats / replay-boundary repeats"
)

MIX: Final = (
    (Layout(sub_sessions=50, slots=10), 200),
    (Layout(sub_sessions=2, slots=400), 40),
    (Layout(sub_sessions=1, slots=400, single=True), 30),
)
"""The layouts ``main`` cycles through by default, with the faults each run injects."""


def _layout_name(layout: Layout) -> str:
    if layout.single:
        return f"1x{layout.slots}s"
    return f"{layout.sub_sessions}x{layout.slots}"


def _row(report: ChaosReport, layout: Layout) -> str:
    conns = f"{report.connections['control']}/{report.connections['data']}"
    return (
        f"{report.seed:>10} {_layout_name(layout):>9} {report.faults_injected:>7}"
        f" {report.events_checked:>8} {report.lost:>5} {report.duplicated:>5}"
        f" {report.out_of_order:>6} {report.mismatched:>5} {len(report.failures):>5}"
        f" {report.gaps:>5} {report.explicit:>6} {report.reannounced:>6}"
        f" {report.boundary_duplicates:>6} {conns:>10} {report.wall_seconds:>7.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.managed.chaos",
        description=(
            "Seeded fault injection on both planes of managed sessions. Without --sub-sessions,"
            " --slots or --single, runs cycle through 50 sub-sessions x 10 slots, 2 x 400 and a"
            " single 400-slot session."
        ),
    )
    parser.add_argument("--seeds", type=int, default=5, help="runs with new seeds (default 5)")
    parser.add_argument("--faults", type=int, help="faults to inject per run")
    parser.add_argument(
        "--total", type=int, default=1000, help="keep adding seeds until this many faults fired"
    )
    parser.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    parser.add_argument("--sub-sessions", type=int)
    parser.add_argument("--slots", type=int, help="slots per sub-session")
    parser.add_argument("--single", action="store_true", help="one managed session of --slots")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)

    if args.sub_sessions is None and args.slots is None and not args.single:
        layouts = [(layout, args.faults or faults) for layout, faults in MIX]
    else:
        layout = Layout(
            sub_sessions=1 if args.single else (args.sub_sessions or 50),
            slots=args.slots or (400 if args.single else 10),
            single=args.single,
        )
        layouts = [(layout, args.faults or 200)]
    fixed: list[int] = list(args.seed or [])
    entropy = random.SystemRandom()
    total_faults = 0
    total_events = 0
    bad: list[tuple[int, Layout, int]] = []
    totals = collections.Counter[str]()
    print(_LEGEND)
    print(_HEADER, flush=True)
    runs = 0
    while True:
        if fixed:
            seed = fixed.pop(0)
        elif args.seed or (runs >= args.seeds and total_faults >= args.total):
            break
        else:
            seed = entropy.randrange(1, 2**31)
        layout, faults = layouts[runs % len(layouts)]
        runs += 1
        try:
            report = trio.run(
                _one, seed, faults, layout,
                clock=trio.testing.MockClock(autojump_threshold=0),
            )  # fmt: skip
        except Exception as exc:  # a hung or crashed run: name its seed and go on
            print(f"{seed:>10} {_layout_name(layout):>9} ERROR {type(exc).__name__}: {exc}")
            bad.append((seed, layout, faults))
            continue
        total_faults += report.faults_injected
        total_events += report.events_checked
        for name in ("lost", "duplicated", "out_of_order", "mismatched", "explicit", "gaps"):
            totals[name] += getattr(report, name)
        totals["failures"] += len(report.failures)
        print(_row(report, layout), flush=True)
        for index, failure in sorted(report.failures.items()):
            who = "standalone" if index == STANDALONE else f"sub-session {index}"
            print(f"    {who}: {failure}", flush=True)
        if not report.ok:
            bad.append((seed, layout, faults))
    print(
        f"{runs} runs: faults injected {total_faults}, events checked {total_events},"
        f" lost {totals['lost']}, duplicated {totals['duplicated']},"
        f" out of order {totals['out_of_order']}, mismatched {totals['mismatched']},"
        f" explicit failures {totals['failures']} (gaps {totals['gaps']},"
        f" undelivered {totals['explicit']})"
    )
    if bad:
        print("FAILED: reproduce with")
        for seed, layout, faults in bad:
            options = f"--faults {faults} --sub-sessions {layout.sub_sessions}"
            options += f" --slots {layout.slots}" + (" --single" if layout.single else "")
            print(f"  python -m tests.managed.chaos {options} --seed {seed}")
        return 1
    return 0


async def _one(seed: int, faults: int, layout: Layout) -> ChaosReport:
    return await run_chaos(
        seed,
        sub_sessions=layout.sub_sessions,
        faults=faults,
        slots=layout.slots,
        single=layout.single,
    )


if __name__ == "__main__":
    sys.exit(main())
