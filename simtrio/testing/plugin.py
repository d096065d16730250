"""The ``simtrio`` pytest plugin: an embedded server and recorded-run replays as fixtures.

Installing simtrio registers this module through the ``pytest11`` entry point. It registers
three markers and two fixtures and does nothing else: a test that requests neither fixture is
not touched, and the server and recording packages are imported only when a fixture is set up.

Both fixtures are async, function-scoped and need pytest-trio: set ``trio_mode = true`` in the
pytest configuration, or mark each test with ``@pytest.mark.trio``. Their configuration is
checked before the test's trio loop starts, so a mistake is reported as a setup error.

* ``simtrio_server`` yields a running :class:`simtrio.server.ReferenceServer`. Configure it
  with ``@pytest.mark.simtrio_server(config=None, **fields)`` (a
  :class:`~simtrio.server.ServerConfig` and/or its fields: ``faults=``, ``seed=``,
  ``api_key=``, ...), or by indirect parametrization with a ``ServerConfig`` or a dict of
  fields. Markers on the module, class and function are merged, the closest winning; the
  parameter is applied last.
* ``simtrio_replay`` yields a running :class:`simtrio.recording.ReplayServer` for
  ``@pytest.mark.simtrio_replay(store, run_id=None, *, raise_on_divergence=True,
  deadline=60.0)`` (or an indirect parameter: a dict with the same keys). A relative ``store``
  is found beside the test file; without ``run_id`` the latest ended run of the store is
  served. A divergence from the recording fails the test at once, with one line naming the
  step, unless ``raise_on_divergence=False``. A test still running ``deadline`` seconds (on
  trio's clock; ``None``: no deadline) after the replay started fails the same way; with a
  :class:`trio.testing.MockClock` there is no default deadline, since its time jumps whenever
  every task waits, sockets included.
* ``simtrio_recorded`` labels tests that depend on recorded runs; every test that uses
  ``simtrio_replay`` gets it, so ``-m "not simtrio_recorded"`` deselects them.
"""

from __future__ import annotations

__all__: list[str] = []

import math
import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simtrio.recording import ReplayServer
    from simtrio.server import ReferenceServer, ServerConfig

SERVER_MARKER: Final = "simtrio_server"
REPLAY_MARKER: Final = "simtrio_replay"
RECORDED_MARKER: Final = "simtrio_recorded"

_MARKER_HELP: Final = (
    f"{SERVER_MARKER}(config=None, **fields): configure the simtrio_server fixture with a "
    "simtrio.server.ServerConfig and/or its fields (faults=, seed=, api_key=, ...)",
    f"{REPLAY_MARKER}(store, run_id=None, *, raise_on_divergence=True, deadline=60.0): the "
    "recorded run the simtrio_replay fixture serves (a relative store path is taken from the "
    "test file's directory; no run_id: the latest ended run; deadline: seconds before the test "
    "fails, None for none)",
    f"{RECORDED_MARKER}: the test depends on a recorded run (added to every test that uses "
    "simtrio_replay)",
)

_NEEDS_TRIO: Final = (
    "simtrio's fixtures run inside the test's trio loop: install pytest-trio and set "
    "'trio_mode = true' in the pytest configuration, or mark the test with @pytest.mark.trio"
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, so ``--strict-markers`` accepts them."""
    for line in _MARKER_HELP:
        config.addinivalue_line("markers", line)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Label replay tests ``simtrio_recorded`` before ``-m`` selects on markers."""
    for item in items:
        if REPLAY_MARKER in getattr(item, "fixturenames", ()):
            item.add_marker(RECORDED_MARKER)


# --------------------------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------------------------


def _item(request: pytest.FixtureRequest) -> pytest.Item:
    """The test a function-scoped fixture runs for (``request.node`` is untyped)."""
    return cast("pytest.Item", request.node)  # pyright: ignore[reportUnknownMemberType]


def _require_trio(item: pytest.Item) -> None:
    if item.get_closest_marker("trio") is None:
        pytest.fail(_NEEDS_TRIO, pytrace=False)


def _indirect_param(item: pytest.Item, fixture: str) -> object:
    """The indirect parameter given to ``fixture`` for this test, or None."""
    callspec = getattr(item, "callspec", None)
    params: Mapping[str, object] = getattr(callspec, "params", {})
    return params.get(fixture)


def _str_keys(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): value for key, value in mapping.items()}


# --------------------------------------------------------------------------------------------
# simtrio_server
# --------------------------------------------------------------------------------------------


def _apply(config: ServerConfig, value: object, where: str) -> ServerConfig:
    """``config`` with ``value`` (a ``ServerConfig`` or a mapping of its fields) applied."""
    from simtrio.server import ServerConfig

    if isinstance(value, ServerConfig):
        return value
    if not isinstance(value, Mapping):
        pytest.fail(
            f"{where}: expected a simtrio.server.ServerConfig or a dict of its fields, "
            f"got {type(value).__name__}",
            pytrace=False,
        )
    fields = _str_keys(value)  # pyright: ignore[reportUnknownArgumentType]
    known = sorted(attrs.fields_dict(ServerConfig))
    unknown = sorted(set(fields) - set(known))
    if unknown:
        pytest.fail(
            f"{where}: unknown ServerConfig field(s) {', '.join(unknown)}; "
            f"known: {', '.join(known)}",
            pytrace=False,
        )
    try:
        return attrs.evolve(config, **fields)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"{where}: invalid server configuration: {exc}", pytrace=False)


def _server_config(item: pytest.Item) -> ServerConfig:
    """Markers from the farthest (module) to the closest (function), then the parameter."""
    from simtrio.server import ServerConfig

    config = ServerConfig(deterministic_ids=True)  # tests compare runs: the same ids each time
    where = f"@pytest.mark.{SERVER_MARKER}"
    for mark in reversed(list(item.iter_markers(SERVER_MARKER))):
        if len(mark.args) > 1:
            pytest.fail(f"{where} takes at most one positional argument", pytrace=False)
        if mark.args:
            config = _apply(config, mark.args[0], where)
        config = _apply(config, mark.kwargs, where)
    param = _indirect_param(item, SERVER_MARKER)
    if param is not None:
        config = _apply(config, param, f"the {SERVER_MARKER} parameter")
    return config


@pytest.fixture
def _simtrio_server_config(request: pytest.FixtureRequest) -> ServerConfig:
    item = _item(request)
    _require_trio(item)
    return _server_config(item)


@pytest.fixture
async def simtrio_server(_simtrio_server_config: ServerConfig) -> AsyncIterator[ReferenceServer]:
    """A reference server on 127.0.0.1 (any free port), running for the test.

    Configure it with ``@pytest.mark.simtrio_server(...)`` or indirect parametrization; give
    clients ``simtrio_server.url``. Leaving the test closes every connection and session.
    """
    from simtrio.server import serve

    async with serve(_simtrio_server_config) as server:
        yield server


# --------------------------------------------------------------------------------------------
# simtrio_replay
# --------------------------------------------------------------------------------------------


DEFAULT_REPLAY_DEADLINE: Final = 60.0
"""Seconds a test using ``simtrio_replay`` may run before it fails (marker: ``deadline=``)."""

_UNSET: Final = object()


@attrs.frozen
class _ReplaySpec:
    store: Path
    run_id: str
    raise_on_divergence: bool
    deadline: float | object | None = _UNSET
    """Seconds, None for no deadline, or unset (the default unless the clock is mocked)."""


class ReplayDeadlineExceeded(Exception):
    """A test using ``simtrio_replay`` ran past its deadline."""


def _replay_arguments(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], where: str
) -> tuple[Path, str | None, bool, float | object | None]:
    names = ("store", "run_id")
    if len(args) > len(names):
        pytest.fail(f"{where} takes at most two positional arguments", pytrace=False)
    values: dict[str, Any] = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key in values:
            pytest.fail(f"{where}: {key} given twice", pytrace=False)
        values[key] = value
    unknown = sorted(set(values) - {"store", "run_id", "raise_on_divergence", "deadline"})
    if unknown:
        pytest.fail(f"{where}: unknown argument(s) {', '.join(unknown)}", pytrace=False)
    store = values.get("store")
    if not isinstance(store, str | os.PathLike):
        pytest.fail(f"{where} needs store=<path of a run store>", pytrace=False)
    run_id = values.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        pytest.fail(f"{where}: run_id must be a str", pytrace=False)
    raise_on_divergence = values.get("raise_on_divergence", True)
    if not isinstance(raise_on_divergence, bool):
        pytest.fail(f"{where}: raise_on_divergence must be a bool", pytrace=False)
    deadline: object = values.get("deadline", _UNSET)
    if deadline is not _UNSET and deadline is not None:
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, int | float)
            or not (math.isfinite(deadline) and deadline > 0)
        ):
            pytest.fail(f"{where}: deadline must be a positive number or None", pytrace=False)
        deadline = float(deadline)
    return Path(os.fspath(store)), run_id, raise_on_divergence, deadline  # pyright: ignore[reportUnknownArgumentType]


def _resolve_run(store: Path, run_id: str | None) -> str:
    """The run to serve: ``run_id`` if the store has it, else the latest ended run."""
    from simtrio.errors import SimtrioError
    from simtrio.recording import RunStatus, get_run, list_runs

    try:
        if run_id is not None:
            get_run(store, run_id)
            return run_id
        ended = [run.run_id for run in list_runs(store) if run.status is RunStatus.ENDED]
    except SimtrioError as exc:
        pytest.fail(f"{REPLAY_MARKER}: {exc}", pytrace=False)
    if not ended:
        pytest.fail(
            f"{REPLAY_MARKER}: run store {str(store)!r} has no ended run to replay", pytrace=False
        )
    return ended[-1]


def _replay_spec(item: pytest.Item, base: Path) -> _ReplaySpec:
    param = _indirect_param(item, REPLAY_MARKER)
    if param is not None:
        if not isinstance(param, Mapping):
            pytest.fail(f"the {REPLAY_MARKER} parameter must be a dict", pytrace=False)
        fields = _str_keys(param)  # pyright: ignore[reportUnknownArgumentType]
        arguments = _replay_arguments((), fields, f"the {REPLAY_MARKER} parameter")
    else:
        mark = item.get_closest_marker(REPLAY_MARKER)
        if mark is None:
            pytest.fail(
                f"the {REPLAY_MARKER} fixture needs @pytest.mark.{REPLAY_MARKER}(store=..., "
                "run_id=...) or an indirect parameter",
                pytrace=False,
            )
        arguments = _replay_arguments(mark.args, mark.kwargs, f"@pytest.mark.{REPLAY_MARKER}")
    store, run_id, raise_on_divergence, deadline = arguments
    if not store.is_absolute():
        store = base / store
    if not store.is_file():
        pytest.fail(f"{REPLAY_MARKER}: no run store at {str(store)!r}", pytrace=False)
    return _ReplaySpec(store, _resolve_run(store, run_id), raise_on_divergence, deadline)


@pytest.fixture
def _simtrio_replay_spec(request: pytest.FixtureRequest) -> _ReplaySpec:
    item = _item(request)
    _require_trio(item)
    return _replay_spec(item, request.path.parent)


@pytest.fixture
async def simtrio_replay(_simtrio_replay_spec: _ReplaySpec) -> AsyncIterator[ReplayServer]:
    """A replay of a recorded run on 127.0.0.1, running for the test.

    Give clients ``simtrio_replay.url``. When the client diverged from the recording, the test
    fails with :class:`simtrio.recording.ReplayDivergence` once it is over (unless the marker
    says ``raise_on_divergence=False``; ``simtrio_replay.divergences`` lists them either way).
    """
    import trio

    from simtrio.recording import replay_server

    spec = _simtrio_replay_spec
    deadline = spec.deadline
    if deadline is _UNSET:
        mocked = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        deadline = None if mocked else DEFAULT_REPLAY_DEADLINE
    async with (
        replay_server(
            spec.store, spec.run_id, raise_on_divergence=spec.raise_on_divergence
        ) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_watch_replay, server, spec.raise_on_divergence, deadline)
        yield server
        nursery.cancel_scope.cancel()


async def _watch_replay(server: ReplayServer, raise_on_divergence: bool, deadline: object) -> None:
    """Fail the running test at the first divergence (if asked) or at the deadline.

    An exception here cancels the test (pytest-trio), so a strategy left waiting for an event
    that a diverged replay will never send does not hang.
    """
    import trio

    limit = deadline if isinstance(deadline, float) else math.inf
    with trio.move_on_after(limit):
        if raise_on_divergence:
            raise await server.wait_divergence()
        await trio.sleep_forever()
    raise ReplayDeadlineExceeded(
        f"the test was still running {limit:g} s after the replay of run {server.run_id} "
        "started (simtrio_replay's deadline; set it with "
        f"@pytest.mark.{REPLAY_MARKER}(..., deadline=SECONDS) or None)"
    )


def _replay_failure(exc: BaseException) -> BaseException | None:
    """The divergence or deadline inside ``exc`` (nested groups included), if any."""
    from simtrio.core.groups import find_leaf
    from simtrio.recording import ReplayDivergence

    return find_leaf(exc, (ReplayDivergence, ReplayDeadlineExceeded))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Report a replay divergence or deadline as one clear failure, not nested groups."""
    try:
        return (yield)
    except BaseException as exc:
        if REPLAY_MARKER not in getattr(item, "fixturenames", ()):
            raise
        failure = _replay_failure(exc)
        if failure is None:
            raise
        if isinstance(failure, ReplayDeadlineExceeded):
            message = f"deadline exceeded: {failure}"
        else:
            message = f"ReplayDivergence: {failure}"
    # Outside the handler, so the report carries no chain of the groups it came in.
    pytest.fail(message, pytrace=False)
