"""``simtrio run`` against a server that echoes the API key: no output or recording shows it."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from simtrio.cli.main import main
from tests.echoing import echo_key

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

KEY = "sekret-echoed-key-777"


def test_outputs_and_recording_of_a_run_keep_the_key_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    echo_key(monkeypatch, KEY)
    out = tmp_path / "run.ndjson"
    db = tmp_path / "runs.db"
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "29", "--api-key", KEY]
    argv.append("--json")
    argv += ["--output", str(out), "--record", str(db), "--subscribe", "transactions"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    text = out.read_text()
    if '"logs"' in text:  # a format that carries logs shows where the echoed key was
        assert "<redacted>" in text
    assert KEY not in text
    assert KEY not in captured.out + captured.err
    json.loads(captured.out.strip().splitlines()[-1])
    assert KEY.encode() not in db.read_bytes()
    with sqlite3.connect(db) as conn:
        assert KEY not in repr(conn.execute("SELECT * FROM runs").fetchall())


def test_an_echoed_server_error_in_the_json_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    echo_key(monkeypatch, KEY)
    # 3,000 sub-sessions: more than the reference server accepts, so it answers with an error.
    argv = ["run", "--embedded", "--start-slot", "0", "--end-slot", "299999", "--api-key", KEY]
    # A create the server refuses as invalid is a usage error.
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["status"] == "failed"
    assert "<redacted>" in summary["error"]
    assert KEY not in captured.out + captured.err
