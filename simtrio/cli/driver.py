"""The engine behind ``simtrio run``: drive a backtest, fill the tallies, feed the sinks.

Parallel by default: one driver task per sub-session, each answering ``ReadyForContinue`` with
``Continue(step)`` until ``Completed``. A sub-session that fails is recorded in its tally and
its siblings go on. Nothing here prints; :func:`execute_run` returns a :class:`RunReport`.
With ``--record``, the managed session itself records the run (``recorder=``).
"""

from __future__ import annotations

__all__: list[str] = []

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from simtrio import events
from simtrio.cli.agents import Agent, agent_pnl, read_balances, stats_json
from simtrio.cli.common import Interrupt, Target, display_url, simtrio_error_of
from simtrio.cli.inject import ProgramBuild, injection_states
from simtrio.cli.progress import RunProgress
from simtrio.cli.report import RunReport, SessionTally, tx_facts
from simtrio.core.groups import find_leaf, only
from simtrio.errors import SimtrioError
from simtrio.managed.config import ManagedConfig
from simtrio.params import Continue, CreateSession

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from rich.console import Console

    from simtrio.cli.ndjson import RunWriter
    from simtrio.managed.config import SessionInfo
    from simtrio.recording.recorder import Recorder
    from simtrio.rpc import SessionRpc
    from simtrio.server import ServerConfig

DEFAULT_DISCONNECT_TIMEOUT = 60
"""Seconds the server keeps a detached session: long enough for managed re-attaches."""


@attrs.frozen(kw_only=True)
class RunOptions:
    """A validated ``simtrio run`` command line."""

    target: Target
    start_slot: int
    end_slot: int
    parallel: bool = True
    subscribe: tuple[str, ...] = ()
    program_ids: tuple[str, ...] = ()
    programs: tuple[ProgramBuild, ...] = ()
    """Program builds injected into every (sub-)session before its first step."""
    step: int = 1
    disconnect_timeout: int = DEFAULT_DISCONNECT_TIMEOUT
    reconnect_max_total: float | None = None
    json: bool = False
    record: Path | None = None
    output: Path | None = None
    output_format: str = "sim"
    """``sim`` (the Rust command line's NDJSON) or ``simtrio`` (simtrio's own records)."""
    extra_compute_units: int | None = None
    verbose: int = 0
    seed: int = 0
    slot_delay: float = 0.0
    agents: tuple[Agent, ...] = ()
    """Agents of the create request (verbatim entries); their wallets get a PnL summary."""

    def first_continue(self, start_slot: int) -> Continue:
        """The first step of a session starting at ``start_slot``: with the injections."""
        if not self.programs:
            return Continue(self.step)
        states = injection_states(self.programs, start_slot)
        return Continue(self.step, modify_account_states=states)

    def create(self) -> CreateSession:
        return CreateSession(
            self.start_slot,
            end_slot=self.end_slot,
            send_summary=True,
            parallel=self.parallel,
            disconnect_timeout_secs=self.disconnect_timeout,
            extra_compute_units=self.extra_compute_units,
            agents=[agent.entry for agent in self.agents],
        )

    def managed_config(self) -> ManagedConfig:
        return ManagedConfig(reconnect_max_total=self.reconnect_max_total)


class RunFailed(SimtrioError):
    """Raised inside a recorder's block so the recording ends with outcome ``error``."""


class _Driven(Protocol):
    """What a driver needs of a managed session or a parallel sub-session."""

    @property
    def session_info(self) -> SessionInfo: ...

    def subscribe_transactions(self, program_ids: Sequence[str]) -> None: ...

    def subscribe_account_diffs(self, program_ids: Sequence[str]) -> None: ...

    def subscribe_program_logs(self, program_ids: Sequence[str]) -> None: ...

    def events(self) -> AsyncIterator[events.Event]: ...

    async def send_continue(self, cont: Continue) -> None: ...

    def rpc(self) -> AbstractAsyncContextManager[SessionRpc]: ...


class _Sinks:
    """Where notifications go besides the tallies: the NDJSON file."""

    def __init__(self, ndjson: RunWriter | None) -> None:
        self.ndjson = ndjson

    def session_started(self, tally: SessionTally) -> None:
        if self.ndjson is not None:
            self.ndjson.session_started(tally.session_id, tally.start_slot, tally.end_slot)

    def transaction(self, session_id: str, event: events.Transaction, tally: SessionTally) -> None:
        payload = event.notification.transaction
        facts = tx_facts(payload)
        if tally.on_transaction(facts) and self.ndjson is not None:
            self.ndjson.transaction(session_id, event.notification.slot, facts, payload)

    def program_logs(self, session_id: str, event: events.ProgramLogs, tally: SessionTally) -> None:
        if tally.on_program_logs(event.signature, event.program_id) and self.ndjson is not None:
            self.ndjson.program_logs(session_id, event)

    def account_diff(self, session_id: str, event: events.AccountDiff, tally: SessionTally) -> None:
        n = event.notification
        if tally.on_account_diff(n.account, n.signature, n.slot) and self.ndjson is not None:
            self.ndjson.account_diff(session_id, n)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Wallets:
    """The agents' wallet balances of one (sub-)session: read before its first step and
    after ``completed``. A read that fails is noted in the tally; the session goes on."""

    def __init__(self, rpc: SessionRpc, agents: tuple[Agent, ...], tally: SessionTally) -> None:
        self.rpc = rpc
        self.agents = agents
        self.wallets = [a.wallet for a in agents if a.wallet is not None]
        self.tally = tally
        self.before: dict[str, Any] | None = None
        self.started = False

    async def _read(self) -> dict[str, Any] | None:
        try:
            return await read_balances(self.rpc, self.wallets)
        except SimtrioError as exc:
            if self.tally.agent_error is None:
                self.tally.agent_error = describe(exc)
            return None

    async def first_step(self) -> None:
        if not self.started:
            self.started = True
            self.before = await self._read()

    async def completed(self) -> None:
        if self.before is None:
            return
        after = await self._read()
        if after is not None:
            self.tally.agent_pnl = agent_pnl(self.agents, self.before, after)


async def _drive(
    session: _Driven,
    tally: SessionTally,
    first: Continue,
    cont: Continue,
    sinks: _Sinks,
    agents: tuple[Agent, ...] = (),
) -> None:
    """Answer readiness with ``first``, then ``cont``, until ``Completed``; with agents that
    name wallets, their balances are read through the session RPC around the steps.

    A failure ends up in ``tally``.
    """
    if not any(agent.wallet is not None for agent in agents):
        await _drive_events(session, tally, first, cont, sinks, None)
        return
    try:
        endpoint = session.rpc()
    except SimtrioError as exc:
        tally.agent_error = describe(exc)
        await _drive_events(session, tally, first, cont, sinks, None)
        return
    async with endpoint as rpc:
        await _drive_events(session, tally, first, cont, sinks, _Wallets(rpc, agents, tally))


async def _drive_events(
    session: _Driven,
    tally: SessionTally,
    first: Continue,
    cont: Continue,
    sinks: _Sinks,
    wallets: _Wallets | None,
) -> None:
    session_id = tally.session_id
    step = first
    try:
        async for event in session.events():
            match event:
                case events.ReadyForContinue() | events.Paused():
                    if wallets is not None:
                        await wallets.first_step()
                    await session.send_continue(step)
                    step = cont
                case events.Slot(slot=slot):
                    tally.on_slot(slot)
                case events.Transaction():
                    sinks.transaction(session_id, event, tally)
                case events.AccountDiff():
                    sinks.account_diff(session_id, event, tally)
                case events.ProgramLogs():
                    sinks.program_logs(session_id, event, tally)
                case events.ErrorEvent(error=error):
                    # The step it answers did not happen and no readiness will follow:
                    # waiting on would hang, so the session is given up as failed.
                    tally.on_error(str(error))
                    tally.fail(f"server error: {error}", trio.current_time())
                    return
                case events.Completed(summary=summary, agent_stats=stats):
                    if stats:
                        tally.agent_stats = stats_json(stats)
                    if wallets is not None:
                        await wallets.completed()
                    tally.complete(summary, trio.current_time())
                case _:
                    pass
    except SimtrioError as exc:
        tally.fail(describe(exc), trio.current_time())
        return
    if not tally.completed:
        tally.fail("the event stream ended before the session completed", trio.current_time())


def _subscribe(session: _Driven, opts: RunOptions, program_ids: Sequence[str]) -> None:
    if "transactions" in opts.subscribe:
        session.subscribe_transactions(program_ids)
    if "account-diffs" in opts.subscribe:
        session.subscribe_account_diffs(program_ids)
    if "logs" in opts.subscribe:
        session.subscribe_program_logs(program_ids)


@attrs.frozen
class _Run:
    url: str
    opts: RunOptions
    program_ids: Sequence[str]
    report: RunReport
    sinks: _Sinks
    interrupt: Interrupt


async def _run_parallel(run: _Run, recorder: Recorder | None = None) -> None:
    from simtrio.managed.parallel import open_parallel_session

    cont = Continue(run.opts.step)
    config = run.opts.managed_config()
    async with open_parallel_session(
        run.url, run.opts.target.api_key, run.opts.create(), config=config, recorder=recorder
    ) as parallel:
        subs = parallel.take_sub_sessions()
        now = trio.current_time()
        pairs = [
            (sub, SessionTally(sub.session_info.session_id, sub.range[0], sub.range[1], now))
            for sub in subs
        ]
        run.report.sessions.extend(t for _, t in pairs)
        for _, tally in pairs:
            run.sinks.session_started(tally)
        for sub, _ in pairs:
            _subscribe(sub, run.opts, run.program_ids)
        with run.interrupt.soft_scope():
            async with trio.open_nursery() as nursery:
                for sub, tally in pairs:
                    first = run.opts.first_continue(tally.start_slot)
                    agents = run.opts.agents
                    nursery.start_soon(_drive, sub, tally, first, cont, run.sinks, agents)
        # Every sub-session finished: a signal from here on (teardown) keeps the outcome.
        run.interrupt.settle()


async def _run_single(run: _Run, recorder: Recorder | None = None) -> None:
    from simtrio.managed.session import open_managed_session

    create = run.opts.create()
    cont = Continue(run.opts.step)
    config = run.opts.managed_config()
    async with open_managed_session(
        run.url, run.opts.target.api_key, create, config=config, recorder=recorder
    ) as session:
        info = session.session_info
        tally = SessionTally(
            info.session_id, create.start_slot, create.end_slot, trio.current_time()
        )
        run.report.sessions.append(tally)
        run.sinks.session_started(tally)
        _subscribe(session, run.opts, run.program_ids)
        with run.interrupt.soft_scope():
            first = run.opts.first_continue(tally.start_slot)
            await _drive(session, tally, first, cont, run.sinks, run.opts.agents)
        # The session finished: a signal from here on (teardown) keeps the outcome.
        run.interrupt.settle()


async def _run_sessions(run: _Run, recorder: Recorder | None = None) -> None:
    """The run's session(s); a signal before the drivers start (during the create) stops it
    here, so what encloses it (the recorder) is left normally."""
    with run.interrupt.soft_scope():
        await (_run_parallel if run.opts.parallel else _run_single)(run, recorder)


async def _run_recorded(run: _Run, db: Path) -> None:
    from simtrio.recording.recorder import open_recorder

    create = run.opts.create()
    # A stopped run leaves the recorder's block cancelled, so the recording ends CANCELLED.
    with trio.CancelScope() as stopping:
        async with open_recorder(
            db, create_params=create, server_url=run.url, secrets=[run.opts.target.api_key]
        ) as recorder:
            run.report.run_id = recorder.run_id
            try:
                await _run_sessions(run, recorder)
            except (SimtrioError, BaseExceptionGroup) as exc:
                error = _error_of_a_stop(exc) if run.interrupt.requested else None
                if error is None:
                    raise
                # A session stopped by a signal may fail on its way out (its close or its
                # control task cut short, depending on where the stop found it): the run was
                # still stopped as asked, so it ends cancelled below; the error is reported.
                run.report.error = describe(error)
            # End the recording with an outcome that says how the run went.
            if run.interrupt.requested:
                stopping.cancel()
                await trio.lowlevel.checkpoint()
            if run.report.failed:
                raise RunFailed("one or more sessions failed")


def _error_of_a_stop(exc: BaseException) -> SimtrioError | None:
    """The simtrio error in ``exc`` when ``exc`` holds nothing but simtrio errors and
    cancellations (what stopping sessions may raise); else None. A failed recording is never
    one of them: it must end the run as an error."""
    from simtrio.recording import RecordingFailed

    if only(exc, trio.Cancelled) or not only(exc, (SimtrioError, trio.Cancelled)):
        return None
    if find_leaf(exc, RecordingFailed) is not None:
        return None
    return find_leaf(exc, SimtrioError)


def _metadata(opts: RunOptions, url: str, program_ids: Sequence[str]) -> dict[str, Any]:
    create = opts.create()
    return {
        "start_slot": create.start_slot,
        "end_slot": create.end_slot,
        "parallel": create.parallel,
        "send_summary": create.send_summary,
        "disconnect_timeout_secs": create.disconnect_timeout_secs,
        "url": display_url(url),
        "embedded": opts.target.embedded,
        "seed": opts.seed if opts.target.embedded else None,
        "subscriptions": list(opts.subscribe),
        "program_ids": list(program_ids) if opts.subscribe else [],
        "program_so": [build.path for build in opts.programs],
        "step": opts.step,
        "extra_compute_units": opts.extra_compute_units,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
    }


async def _run_at(run: _Run) -> None:
    ndjson = run.sinks.ndjson
    if ndjson is not None:
        ndjson.metadata(_metadata(run.opts, run.url, run.program_ids))
        ndjson.flush()
    try:
        if run.opts.record is not None:
            await _run_recorded(run, run.opts.record)
        else:
            await _run_sessions(run)
    except (SimtrioError, BaseExceptionGroup) as exc:
        error = simtrio_error_of(exc)
        if error is None:
            raise
        if isinstance(error, RunFailed):
            return
        run.report.error = describe(error)
        for tally in run.report.sessions:
            tally.fail(run.report.error, trio.current_time())


async def _run_target(
    opts: RunOptions,
    report: RunReport,
    sinks: _Sinks,
    interrupt: Interrupt,
    server_config: ServerConfig | None,
    notice: Callable[[str], None],
) -> None:
    if opts.target.url is not None:
        report.url = display_url(opts.target.url)
        await _run_at(_Run(opts.target.url, opts, opts.program_ids, report, sinks, interrupt))
        return
    from simtrio.server import ServerConfig, serve

    config = server_config or ServerConfig(
        seed=opts.seed, slot_delay=opts.slot_delay, api_key=opts.target.api_key or None
    )
    async with serve(config) as server:
        report.url = server.control_url
        notice(f"simtrio: embedded reference server at {server.control_url}")
        program_ids = opts.program_ids or server.config.program_ids
        await _run_at(_Run(server.control_url, opts, program_ids, report, sinks, interrupt))


async def execute_run(
    opts: RunOptions,
    *,
    interrupt: Interrupt | None = None,
    ndjson: RunWriter | None = None,
    console: Console | None = None,
    server_config: ServerConfig | None = None,
) -> RunReport:
    """Run the backtest ``opts`` describes; a failed run is reported, not raised.

    ``server_config`` configures the embedded server (tests inject faults through it);
    ``console`` (stderr) gets a line naming the embedded server's URL and, when it is a
    terminal, the progress display.
    """
    interrupt = interrupt or Interrupt()
    create = opts.create()
    report = RunReport(
        url=display_url(opts.target.url or ""),
        parallel=opts.parallel,
        start_slot=create.start_slot,
        end_slot=create.end_slot,
        started_at=trio.current_time(),
        subscriptions=opts.subscribe,
        agents=bool(opts.agents),
    )
    sinks = _Sinks(ndjson)

    def say(text: str) -> None:
        if console is not None:
            console.print(text, markup=False, highlight=False, soft_wrap=True)

    with interrupt.hard:
        async with trio.open_nursery() as nursery:
            if console is not None and console.is_terminal:
                total = create.end_slot - create.start_slot + 1
                display = RunProgress(console, lambda: report.sessions, total)
                nursery.start_soon(display.run)
            try:
                await _run_target(opts, report, sinks, interrupt, server_config, say)
            finally:
                nursery.cancel_scope.cancel()
    now = trio.current_time()
    report.finished_at = now
    report.interrupted = interrupt.requested
    for tally in report.sessions:
        tally.interrupt(now)
    if ndjson is not None:
        ndjson.summary(report.to_json(now))
        ndjson.flush()
    return report
