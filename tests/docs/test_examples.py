"""Every code example in the documentation runs, and says what the pages say it prints.

Conventions the pages follow (checked here):

* A runnable Python example is a file ``docs/examples/NAME.py`` with an ``async def main()``
  that uses the embedded server, shown by a fenced block whose only line is
  ``--8<-- "docs/examples/NAME.py"``. Each one is imported and its ``main()`` run.
* A ``text`` block titled ``Output`` after an included example lists lines that example prints;
  each must appear among the lines it actually printed.
* Any other Python block is a fragment and must carry a title; (page, title, first line) must be
  listed in :data:`FRAGMENTS`, so adding one is a deliberate act.
* Configuration blocks (``toml``, ``ini``, ``yaml``) are included files too, or fragments.
* In ``console`` blocks, every ``$ simtrio ...`` command is run, in order, per page, in a
  scratch directory, and must exit with status 0 — unless it is listed in
  :data:`NOT_RUNNABLE`, like every command that is not ``simtrio`` (installs, pytest runs).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from simtrio.cli.main import main as cli_main

if TYPE_CHECKING:
    from types import ModuleType

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "examples" not in p.parts)

USER_TEST = "test_strategy.py"
"""The example test file of the testing guide: run by pytester, not imported."""
CONFIG_SNIPPET = "pytest_config.toml"

FRAGMENTS = {
    ("guide/managed.md", "Signature", "async with simtrio.open_managed_session("),
    ("guide/chain.md", "Fragment", "while isinstance(step := await session.advance_to_discovery("),
    ("guide/subscriptions.md", "Fragment", "session.subscribe_account_diffs([program_id])"),
    ("guide/testing.md", "Fragment", "@pytest.mark.simtrio_server(seed=7, api_key="),
    ("guide/testing.md", "Fragment", '@pytest.mark.parametrize("simtrio_server", [{"seed": 1},'),
    ("guide/testing.md", "Fragment", '@pytest.mark.simtrio_replay(store="runs.db")'),
    ("guide/sweeps.md", "Executors", "from simtrio.sweep import LocalExecutor"),
}
"""Python blocks that are not complete programs, by (page, title, start of the first line)."""

NOT_RUNNABLE = {
    # Installing needs the package index; running the whole suite is what CI does.
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/simtrio run --embedded "
    "--start-slot 1000 --slot-count 299",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest",
    "pip install ./simtrio pytest-trio",
    # Servers that run until stopped, and runs against them.
    "simtrio serve --port 7000 --seed 7",
    "simtrio run --url ws://127.0.0.1:7000 --start-slot 1000 --slot-count 299",
    "simtrio replay runs.db 20260105T100000.000000Z-1a2b3c",
    # A remote server.
    "simtrio run --url sim.example.com --start-slot 250000000 --end-slot 250000999 "
    "--program-id MyProgram111111111111111111111111111111111 "
    "--program-so target/deploy/my_program.so --output-file experiment.ndjson",
    "simtrio ranges --url sim.example.com --after 2025-06-01 --before 2025-06-30T12:00:00Z",
    # Sweep commands need the sweep file and a store (tests/cli/test_sweep.py runs the file
    # shown), a Ray cluster, or a recorded run id.
    "simtrio sweep sweep.toml --record runs.db --embedded",
    "simtrio sweep sweep.toml --record runs.db --executor processes --workers 2 --embedded",
    "simtrio sweep sweep.toml --record runs.db --executor ray --address ray://head:10001 "
    "--url wss://simulator.example/backtest",
    "simtrio sweep report runs.db step-grid --json",
    "simtrio runs export runs.db 20250102T030405.123456Z-9f2c1a -o one.simrun",
    "simtrio runs import other.db one.simrun",
}
"""Console commands that are shown but not run here."""

SNIPPET = re.compile(r'^--8<-- "docs/examples/([^"]+)"$')
FENCE = re.compile(r"^(`{3,})([\w-]*)(.*)$")
TITLE = re.compile(r'title="([^"]*)"')


@attrs.frozen
class Block:
    page: str
    line: int
    lang: str
    title: str | None
    body: tuple[str, ...]

    @property
    def included(self) -> str | None:
        """The example file a block consists of, if it is exactly one snippet line."""
        if len(self.body) == 1:
            match = SNIPPET.match(self.body[0].strip())
            if match:
                return match.group(1)
        return None


def blocks(page: Path) -> list[Block]:
    out: list[Block] = []
    lines = page.read_text().splitlines()
    name = page.relative_to(DOCS).as_posix()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        ticks, lang, rest = match.groups()
        title = TITLE.search(rest)
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != ticks:
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{name}:{start + 1}: unclosed code block"
        out.append(Block(name, start + 1, lang, title and title.group(1), tuple(body)))
        i += 1
    return out


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


def expected_outputs() -> dict[str, list[str]]:
    """Lines of each ``Output`` block, keyed by the example included just before it."""
    out: dict[str, list[str]] = {}
    last: str | None = None
    for block in ALL_BLOCKS:
        if block.included is not None:
            last = block.included
        elif block.lang == "text" and block.title == "Output":
            assert last is not None, f"{block.page}:{block.line}: Output without an example"
            out.setdefault(last, []).extend(line for line in block.body if line.strip())
    return out


def commands(page: str) -> list[str]:
    found: list[str] = []
    for block in ALL_BLOCKS:
        if block.page == page and block.lang == "console":
            found.extend(line[2:].strip() for line in block.body if line.startswith("$ "))
    return found


def runnable(page: str) -> list[str]:
    return [c for c in commands(page) if c not in NOT_RUNNABLE]


PROGRAMS = sorted(
    p.name for p in EXAMPLES.glob("*.py") if p.name != USER_TEST and not p.name.startswith("_")
)


# --------------------------------------------------------------------------------------------
# The pages' code blocks
# --------------------------------------------------------------------------------------------


def test_the_pages_have_examples() -> None:
    assert len(PAGES) >= 20
    assert len([b for b in ALL_BLOCKS if b.included]) >= 10
    assert len(PROGRAMS) >= 9


def test_every_python_block_is_an_included_example_or_a_listed_fragment() -> None:
    fragments_seen: set[tuple[str, str, str]] = set()
    for block in ALL_BLOCKS:
        if block.lang not in ("python", "py", "pycon", "toml", "ini", "yaml"):
            continue
        where = f"{block.page}:{block.line}"
        if block.included is not None:
            assert (EXAMPLES / block.included).is_file(), f"{where}: no {block.included}"
            continue
        assert block.title is not None, f"{where}: an untitled {block.lang} block"
        key = next(
            (
                f
                for f in FRAGMENTS
                if f[:2] == (block.page, block.title) and block.body[0].startswith(f[2])
            ),
            None,
        )
        assert key is not None, f"{where}: {block.lang} block is neither included nor listed"
        fragments_seen.add(key)
    assert fragments_seen == FRAGMENTS, f"listed but gone: {FRAGMENTS - fragments_seen}"


def test_every_example_file_is_shown_and_runnable() -> None:
    shown = {b.included for b in ALL_BLOCKS if b.included}
    files = {p.name for p in EXAMPLES.iterdir() if p.is_file()}
    assert files == shown
    for name in PROGRAMS:
        source = (EXAMPLES / name).read_text()
        assert "async def main() -> None:" in source, name
        assert 'if __name__ == "__main__":\n    trio.run(main)\n' in source, name


def test_every_console_command_is_run_or_listed() -> None:
    every = [c for page in PAGES for c in commands(page.relative_to(DOCS).as_posix())]
    for command in every:
        assert command.startswith("simtrio ") or command in NOT_RUNNABLE, command
    assert set(every) >= NOT_RUNNABLE, f"listed but gone: {NOT_RUNNABLE - set(every)}"


# --------------------------------------------------------------------------------------------
# Running the examples
# --------------------------------------------------------------------------------------------


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PROGRAMS)
async def test_example_runs_and_prints_what_the_docs_show(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _load(EXAMPLES / name)
    with trio.fail_after(20):
        await module.main()
    printed = capsys.readouterr().out.splitlines()
    assert printed, f"{name} printed nothing"
    for line in expected_outputs().get(name, []):
        assert line in printed, f"{name} did not print {line!r}; it printed {printed}"


def test_an_example_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "first_program.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "correct simulations: 30" in result.stdout


# --------------------------------------------------------------------------------------------
# The command lines
# --------------------------------------------------------------------------------------------

CLI_PAGES = sorted(
    page
    for page in {p.relative_to(DOCS).as_posix() for p in PAGES}
    if runnable(page) and page != "guide/testing.md"  # run by the pytester test below
)


def _run_cli(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    argv = shlex.split(command)
    assert argv[0] == "simtrio"
    status = cli_main(argv[1:])
    captured = capsys.readouterr()
    assert status == 0, f"{command!r} exited with {status}: {captured.err}"
    return captured.out


@pytest.mark.parametrize("page", CLI_PAGES)
def test_console_commands_of_a_page_succeed(
    page: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    monkeypatch.delenv("SIMULATOR_API_KEY", raising=False)
    for command in runnable(page):
        assert _run_cli(command, capsys).strip(), f"{command!r} printed nothing"


# --------------------------------------------------------------------------------------------
# The testing guide, as a user would follow it
# --------------------------------------------------------------------------------------------


def test_the_testing_guide_works_in_a_fresh_project(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    pytester.makepyprojecttoml((EXAMPLES / CONFIG_SNIPPET).read_text())
    (pytester.path / "tests").mkdir()
    shutil.copy(EXAMPLES / USER_TEST, pytester.path / "tests" / USER_TEST)
    recorded = runnable("guide/testing.md")
    assert len(recorded) == 1
    assert "--record tests/runs.db" in recorded[0]
    _run_cli(recorded[0], capsys)

    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)

    without_recordings = pytester.runpytest("-p", "no:cacheprovider", "-m", "not simtrio_recorded")
    without_recordings.assert_outcomes(passed=4, deselected=1)
