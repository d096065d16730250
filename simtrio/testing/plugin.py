"""The ``simtrio`` pytest plugin: an embedded server and recorded-run replays as fixtures.

Installing simtrio registers this module through the ``pytest11`` entry point. It only
registers three markers and two fixtures; a test that requests neither fixture is not touched,
and the server and recording packages are imported only when a fixture is set up.

Both fixtures are async (function scope) and need pytest-trio: set ``trio_mode = true`` in
the pytest configuration, or mark each test with ``@pytest.mark.trio``.

* ``simtrio_server`` yields a running :class:`simtrio.server.ReferenceServer`. Configure it
  with ``@pytest.mark.simtrio_server(config=None, **fields)``: a
  :class:`~simtrio.server.ServerConfig` and/or its fields (``faults=``, ``seed=``,
  ``api_key=``, ...), or by indirect parametrization with a ``ServerConfig`` or a dict of
  fields. Markers on the module, class and function are merged, the closest winning; the
  parameter is applied last.
* ``simtrio_replay`` yields a running :class:`simtrio.recording.ReplayServer` for
  ``@pytest.mark.simtrio_replay(store, run_id=None, *, raise_on_divergence=True)`` (or an
  indirect parameter, a dict with the same keys). A relative ``store`` is found beside the test
  file; without ``run_id`` the latest ended run of the store is served. A divergence fails the
  test at teardown unless ``raise_on_divergence=False``.
* ``simtrio_recorded`` labels tests that depend on recorded runs; every test that uses
  ``simtrio_replay`` gets it, so ``-m "not simtrio_recorded"`` deselects them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from simtrio.recording import ReplayServer
    from simtrio.server import ReferenceServer, ServerConfig

__all__ = [
    "RECORDED_MARKER",
    "REPLAY_MARKER",
    "SERVER_MARKER",
    "ReplaySpec",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "replay_spec",
    "server_config",
    "simtrio_replay",
    "simtrio_server",
]

SERVER_MARKER: Final = "simtrio_server"
REPLAY_MARKER: Final = "simtrio_replay"
RECORDED_MARKER: Final = "simtrio_recorded"

_MARKER_HELP: Final = (
    f"{SERVER_MARKER}(config=None, **fields): configure the simtrio_server fixture with a "
    "simtrio.server.ServerConfig and/or its fields (faults=, seed=, api_key=, ...)",
    f"{REPLAY_MARKER}(store, run_id=None, *, raise_on_divergence=True): the recorded run the "
    "simtrio_replay fixture serves (a relative store path is taken from the test file's "
    "directory; no run_id: the latest ended run)",
    f"{RECORDED_MARKER}: the test depends on a recorded run (added to every test that uses "
    "simtrio_replay)",
)

_NEEDS_TRIO: Final = (
    "the {fixture} fixture runs inside the test's trio loop: install pytest-trio and set "
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
# simtrio_server
# --------------------------------------------------------------------------------------------


def _field_names() -> list[str]:
    from simtrio.server import ServerConfig

    return sorted(attrs.fields_dict(ServerConfig))


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
    fields: dict[str, Any] = {str(k): v for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    unknown = sorted(set(fields) - set(_field_names()))
    if unknown:
        pytest.fail(
            f"{where}: unknown ServerConfig field(s) {', '.join(unknown)}; "
            f"known: {', '.join(_field_names())}",
            pytrace=False,
        )
    try:
        return attrs.evolve(config, **fields)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"{where}: invalid server configuration: {exc}", pytrace=False)


def server_config(request: pytest.FixtureRequest) -> ServerConfig:
    """The configuration ``simtrio_server`` uses for the requesting test.

    Markers are applied from the farthest (module) to the closest (function), then the
    indirect parameter, if any.
    """
    from simtrio.server import ServerConfig

    config = ServerConfig()
    marks = list(request.node.iter_markers(SERVER_MARKER))
    for mark in reversed(marks):
        where = f"@pytest.mark.{SERVER_MARKER}"
        if len(mark.args) > 1:
            pytest.fail(f"{where} takes at most one positional argument", pytrace=False)
        if mark.args:
            config = _apply(config, mark.args[0], where)
        config = _apply(config, mark.kwargs, where)
    param: object = getattr(request, "param", None)
    if param is not None:
        config = _apply(config, param, f"the {SERVER_MARKER} parameter")
    return config


def _require_trio(request: pytest.FixtureRequest, fixture: str) -> None:
    if request.node.get_closest_marker("trio") is None:
        pytest.fail(_NEEDS_TRIO.format(fixture=fixture), pytrace=False)


@pytest.fixture
def _simtrio_server_config(request: pytest.FixtureRequest) -> ServerConfig:
    """Checked before the async fixture starts, so a misuse fails with a clear message."""
    _require_trio(request, SERVER_MARKER)
    return server_config(request)


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


@attrs.frozen
class ReplaySpec:
    """What ``simtrio_replay`` serves: a store file, a run (None: the latest ended one)."""

    store: Path
    run_id: str | None = None
    raise_on_divergence: bool = True


def _spec_from(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], base: Path, where: str
) -> ReplaySpec:
    names = ("store", "run_id")
    if len(args) > len(names):
        pytest.fail(f"{where} takes at most two positional arguments", pytrace=False)
    values: dict[str, Any] = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key in values:
            pytest.fail(f"{where}: {key} given twice", pytrace=False)
        values[key] = value
    unknown = sorted(set(values) - {"store", "run_id", "raise_on_divergence"})
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
    path = Path(os.fspath(store))  # pyright: ignore[reportUnknownArgumentType]
    if not path.is_absolute():
        path = base / path
    return ReplaySpec(path, run_id, raise_on_divergence)


def replay_spec(request: pytest.FixtureRequest) -> ReplaySpec:
    """What ``simtrio_replay`` serves for the requesting test (the parameter wins over markers)."""
    base = request.path.parent
    param: object = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, Mapping):
            pytest.fail(f"the {REPLAY_MARKER} parameter must be a dict", pytrace=False)
        kwargs: dict[str, Any] = {str(k): v for k, v in param.items()}  # pyright: ignore[reportUnknownVariableType]
        return _spec_from((), kwargs, base, f"the {REPLAY_MARKER} parameter")
    mark = request.node.get_closest_marker(REPLAY_MARKER)
    if mark is None:
        pytest.fail(
            f"the {REPLAY_MARKER} fixture needs @pytest.mark.{REPLAY_MARKER}(store=..., "
            "run_id=...) or an indirect parameter",
            pytrace=False,
        )
    return _spec_from(mark.args, mark.kwargs, base, f"@pytest.mark.{REPLAY_MARKER}")


def _latest_ended_run(store: Path) -> str:
    from simtrio.recording import RunStatus, list_runs

    ended = [run.run_id for run in list_runs(store) if run.status is RunStatus.ENDED]
    if not ended:
        raise LookupError(f"run store {str(store)!r} has no ended run to replay")
    return ended[-1]


@pytest.fixture
def _simtrio_replay_spec(request: pytest.FixtureRequest) -> ReplaySpec:
    _require_trio(request, REPLAY_MARKER)
    spec = replay_spec(request)
    if not spec.store.is_file():
        pytest.fail(f"{REPLAY_MARKER}: no run store at {str(spec.store)!r}", pytrace=False)
    return spec


@pytest.fixture
async def simtrio_replay(_simtrio_replay_spec: ReplaySpec) -> AsyncIterator[ReplayServer]:
    """A replay of a recorded run on 127.0.0.1, running for the test.

    Give clients ``simtrio_replay.url``. When the client diverged from the recording, the
    fixture's teardown raises :class:`simtrio.recording.ReplayDivergence` (unless the marker
    says ``raise_on_divergence=False``; ``simtrio_replay.divergences`` lists them either way).
    """
    import trio

    from simtrio.recording import replay_server

    spec = _simtrio_replay_spec
    run_id = spec.run_id
    if run_id is None:
        try:
            run_id = await trio.to_thread.run_sync(_latest_ended_run, spec.store)
        except LookupError as exc:
            pytest.fail(f"{REPLAY_MARKER}: {exc}", pytrace=False)
    async with replay_server(
        spec.store, run_id, raise_on_divergence=spec.raise_on_divergence
    ) as server:
        yield server
