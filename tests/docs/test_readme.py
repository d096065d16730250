"""The README's program is the tested docs example, and its commands are the ones CI runs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from simtrio.cli.main import main

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_readme_program_is_the_tested_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    example = (ROOT / "docs" / "examples" / "first_program.py").read_text(encoding="utf-8")
    body = example.split('"""', 2)[2].lstrip("\n")
    assert blocks == [body]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" in commands[1]
    assert "'.[test]'" in commands[1]
    assert "'.[test]'" in ci
    assert "python -m pytest" in ci


def test_the_readme_run_command_runs_whole_bundles(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)[0]
    command = first.split(".venv/bin/", 2)[2]
    assert command == "simtrio run --embedded --start-slot 1000 --slot-count 299"
    assert main([*shlex.split(command)[1:], "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    ranges = [(s["start_slot"], s["end_slot"]) for s in summary["sessions"]]
    assert ranges == [(1000, 1099), (1100, 1199), (1200, 1299)]  # no stray one-slot session
    # The earlier form still works: one more slot, in a fourth sub-session.
    argv = ["run", "--embedded", "--start-slot", "1000", "--slot-count", "300", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["totals"]["slots"] == 301
