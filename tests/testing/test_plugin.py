"""The pytest plugin as a user project sees it: pytester runs small test files that use it."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.testing.helpers import STRATEGY_SOURCE, record_run_sync

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["pytester"]

PYPROJECT = """
[tool.pytest.ini_options]
trio_mode = true
addopts = ["--strict-markers", "-p", "no:cacheprovider"]
filterwarnings = ["error"]
"""


def _project(pytester: pytest.Pytester, tests: str, *, trio_mode: bool = True) -> None:
    pyproject = PYPROJECT if trio_mode else PYPROJECT.replace("trio_mode = true\n", "")
    pytester.makepyprojecttoml(pyproject)
    pytester.makepyfile(strategy=STRATEGY_SOURCE, test_user=textwrap.dedent(tests))


def _record(pytester: pytest.Pytester) -> tuple[Path, str]:
    (pytester.path / "data").mkdir()
    store = pytester.path / "data" / "runs.db"
    return store, record_run_sync(store)


def test_server_fixture_and_its_configuration(pytester: pytest.Pytester) -> None:
    _project(
        pytester,
        """
        import pytest
        import trio
        from simtrio import events
        from simtrio.server import FaultPlan, Faults, ServerConfig

        from strategy import strategy

        pytestmark = pytest.mark.simtrio_server(bundle_size=50, seed=3)


        async def test_default_server_runs_a_strategy(simtrio_server):
            assert simtrio_server.url.startswith("ws://127.0.0.1:")
            seen = await strategy(simtrio_server.url)
            assert isinstance(seen[-1], events.Completed)
            assert simtrio_server.config.seed == 3


        @pytest.mark.simtrio_server(seed=4, api_key="k")
        async def test_closest_marker_wins_and_markers_merge(simtrio_server):
            assert simtrio_server.config.seed == 4
            assert simtrio_server.config.api_key == "k"
            assert simtrio_server.config.bundle_size == 50


        @pytest.mark.simtrio_server(ServerConfig(seed=9), api_key="x")
        async def test_a_config_object_replaces_what_came_before(simtrio_server):
            assert (simtrio_server.config.seed, simtrio_server.config.api_key) == (9, "x")
            assert simtrio_server.config.bundle_size == 100


        # On 127.0.0.1, as users get the fixture: the suite's in-memory serving is not theirs.
        @pytest.mark.simtrio_server(faults=FaultPlan(control_connections={1: Faults(drop_after=8)}))
        async def test_faults_with_a_mock_clock(simtrio_server, autojump_clock):
            seen = await strategy(simtrio_server.url)
            assert isinstance(seen[-1], events.Completed)
            assert simtrio_server.connection_count("control") == 2


        @pytest.mark.parametrize(
            "simtrio_server", [{"seed": 1}, ServerConfig(seed=2)], indirect=True
        )
        async def test_indirect_parametrization(simtrio_server):
            assert simtrio_server.config.seed in (1, 2)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=6)


def test_replay_fixture_serves_a_recorded_run(pytester: pytest.Pytester) -> None:
    _, run_id = _record(pytester)
    _project(
        pytester,
        f"""
        import pytest
        from simtrio import events

        from strategy import strategy

        RUN_ID = {run_id!r}


        @pytest.mark.simtrio_replay(store="data/runs.db")
        async def test_latest_run_by_default(simtrio_replay):
            assert simtrio_replay.run_id == RUN_ID
            seen = await strategy(simtrio_replay.url)
            assert isinstance(seen[-1], events.Completed)
            assert simtrio_replay.divergence is None


        @pytest.mark.simtrio_replay("data/runs.db", RUN_ID)
        async def test_explicit_run(simtrio_replay):
            await strategy(simtrio_replay.url)


        @pytest.mark.parametrize(
            "simtrio_replay", [{{"store": "data/runs.db", "run_id": RUN_ID}}], indirect=True
        )
        async def test_indirect(simtrio_replay):
            await strategy(simtrio_replay.url)


        async def _diverge(url, advance):
            # Step by `advance` slots (not as recorded) until the replay answers an error.
            import simtrio

            async with simtrio.open_managed_session(
                url, "", __import__("strategy").CREATE
            ) as session:
                async for event in session.events():
                    if isinstance(event, events.ReadyForContinue):
                        await session.send_continue(simtrio.Continue(advance))
                    if isinstance(event, events.ErrorEvent):
                        break


        @pytest.mark.simtrio_replay(store="data/runs.db", raise_on_divergence=False)
        async def test_divergence_kept(simtrio_replay):
            await _diverge(simtrio_replay.url, 1)
            assert len(simtrio_replay.divergences) == 1
            assert simtrio_replay.divergences[0].step == 1


        @pytest.mark.simtrio_replay(store="data/runs.db")
        async def test_divergence_fails_the_test(simtrio_replay):
            await _diverge(simtrio_replay.url, 2)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*ReplayDivergence*diverged at step 1*"])

    deselected = pytester.runpytest("-m", "not simtrio_recorded")
    deselected.assert_outcomes(deselected=5, passed=0, errors=0)


def test_a_divergence_fails_at_once_with_one_clear_line(pytester: pytest.Pytester) -> None:
    """A strategy that waits on after a divergence is cancelled, not left hanging."""
    _record(pytester)
    _project(
        pytester,
        """
        import pytest
        import trio
        import simtrio
        from simtrio import events

        from strategy import CREATE


        @pytest.mark.simtrio_replay(store="data/runs.db")
        async def test_waits_forever_after_the_error(simtrio_replay):
            with trio.fail_after(30):  # a bound for this check only; the fixture ends it first
                async with simtrio.open_managed_session(simtrio_replay.url, "", CREATE) as s:
                    async for event in s.events():
                        if isinstance(event, events.ReadyForContinue):
                            await s.send_continue(simtrio.Continue(2))  # not as recorded


        @pytest.mark.simtrio_replay(store="data/runs.db", deadline=0.2)
        async def test_never_finishes(simtrio_replay):
            with trio.fail_after(30):
                await trio.sleep_forever()
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ReplayDivergence: replay of run * diverged at step 1 of session *",
            "*deadline exceeded: the test was still running 0.2 s after the replay of run *",
        ],
        consecutive=False,
    )
    text = result.stdout.str()
    assert "ExceptionGroup" not in text
    assert "TooSlowError" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("tests", "trio_mode", "message"),
    [
        (
            "def test_sync(simtrio_server):\n    pass\n",
            True,
            "*simtrio's fixtures run inside the test's trio loop*pytest-trio*",
        ),
        (
            "async def test_async(simtrio_server):\n    pass\n",
            False,
            "*simtrio's fixtures run inside the test's trio loop*pytest-trio*",
        ),
        (
            "import pytest\n\n@pytest.mark.simtrio_server(nope=1)\n"
            "async def test_unknown(simtrio_server):\n    pass\n",
            True,
            "*unknown ServerConfig field(s) nope; known: *api_key*",
        ),
        (
            "import pytest\n\n@pytest.mark.simtrio_server(batches_per_slot=0)\n"
            "async def test_invalid(simtrio_server):\n    pass\n",
            True,
            "*invalid server configuration*batches_per_slot*",
        ),
        (
            "async def test_no_marker(simtrio_replay):\n    pass\n",
            True,
            "*simtrio_replay fixture needs @pytest.mark.simtrio_replay(store=*",
        ),
        (
            "import pytest\n\n@pytest.mark.simtrio_replay(store='missing.db')\n"
            "async def test_missing(simtrio_replay):\n    pass\n",
            True,
            "*simtrio_replay: no run store at*missing.db*",
        ),
        (
            "import pytest\n\n@pytest.mark.simtrio_replay(store='x.db', speed=2)\n"
            "async def test_bad_argument(simtrio_replay):\n    pass\n",
            True,
            "*unknown argument(s) speed*",
        ),
    ],
    ids=[
        "sync-test",
        "no-trio-mode",
        "unknown-field",
        "invalid-value",
        "no-marker",
        "no-store",
        "bad-arg",
    ],
)
def test_misuse_fails_with_a_clear_message(
    pytester: pytest.Pytester, tests: str, trio_mode: bool, message: str
) -> None:
    _project(pytester, tests, trio_mode=trio_mode)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    _project(pytester, "def test_nothing():\n    pass\n")
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.simtrio_server(config=None, **fields)*",
            "@pytest.mark.simtrio_replay(store, run_id=None, *",
            "@pytest.mark.simtrio_recorded*",
        ]
    )


def test_inert_unless_used_and_loadable_explicitly(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without autoload, ``-p trio -p simtrio`` loads the plugins; unused, it imports nothing."""
    _project(
        pytester,
        """
        import sys

        import pytest
        import trio


        def test_plain():
            assert sum([1, 2]) == 3


        async def test_trio_without_fixtures():
            await trio.sleep(0)


        def test_nothing_heavy_was_imported():
            assert "simtrio.testing.plugin" in sys.modules
            assert "simtrio.server" not in sys.modules
            assert "simtrio.recording" not in sys.modules


        @pytest.mark.simtrio_server(seed=5)
        async def test_fixture_after_the_others(simtrio_server):
            assert simtrio_server.config.seed == 5
        """,
    )
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess("-p", "trio", "-p", "simtrio", "-W", "error")
    result.assert_outcomes(passed=4)
