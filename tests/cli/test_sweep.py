"""``simtrio sweep``, ``simtrio sweep report`` and ``simtrio runs export|import``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from simtrio.cli.main import main
from simtrio.recording import RunStore

from .processes import ROOT, reaped, simtrio_env, spawn, wait_for_line

if TYPE_CHECKING:
    from pathlib import Path

KEY = "cli-sweep-key-77aa"

SPEC = """
name = "cli-grid"
ranges = [[0, 4], [50, 54]]

[create]
send_summary = true

[grid]
step = [1, 2]

[params]
subscribe = ["transactions"]
"""


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def _sweep(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "sweep", str(_spec(tmp_path)), "--record", str(tmp_path / "runs.db"), "--embedded", *extra
    ]  # fmt: skip


def test_a_sweep_runs_every_cell_and_reports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    assert main(_sweep(tmp_path, "--json")) == 0
    out, err = capsys.readouterr()
    table = json.loads(out)
    assert table["counts"]["ok"] == 4
    assert {c["key"] for c in table["cells"]} == {"0-4/step=1", "0-4/step=2", "50-54/step=1",
                                                   "50-54/step=2"}  # fmt: skip
    assert all(c["result"]["transactions"] > 0 for c in table["cells"])
    assert "4 cells (2 range(s) x step[2])" in err
    assert main(["sweep", "report", str(tmp_path / "runs.db"), "cli-grid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["cells"], key=lambda c: c["key"]) == sorted(
        table["cells"], key=lambda c: c["key"]
    )
    assert main(["sweep", "report", str(tmp_path / "runs.db"), "cli-grid"]) == 0
    text = capsys.readouterr().out
    assert "CELL" in text
    assert "4 cells: 4 ok" in text
    # A second run resumes: nothing is left to do.
    assert main(_sweep(tmp_path)) == 0
    assert "4 of 4 cells succeeded earlier" in capsys.readouterr().err


def test_the_key_is_used_but_never_printed_or_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    monkeypatch.delenv("SIMULATOR_API_KEY", raising=False)
    assert main(_sweep(tmp_path, "--api-key", KEY, "--executor", "processes",
                       "--workers", "2")) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert KEY not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert "SIMULATOR_API_KEY" not in os.environ


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'x'\nranges = [[0, 1]]\napi_key = 'k'\n", "looks like a credential"),
        ("name = 'x'\nranges = [[0, 1]]\n[server]\ntoken = 'k'\n", "looks like a credential"),
        ("ranges = [[0, 1]]\n", "'name'"),
        ("name = 'x'\nranges = [[5, 1]]\n", "ends before it starts"),
        ("name = 'x'\nranges = [[0, 1]]\n[grid]\nstep = []\n", "non-empty list"),
        ("name = 'x'\nranges = [[0, 1]]\nstrategy = 'nocolon'\n", "module:function"),
        ("name = 'x'\nranges = [[0, 1]]\nextra = 1\n", "unknown key"),
        ("name = 'x'\nranges = [[0, 1]]\n[create]\nparallel = 'yes'\n", "[create]"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_a_bad_spec_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = _spec(tmp_path, text)
    assert main(["sweep", str(path), "--record", str(tmp_path / "runs.db")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "'k'" not in err
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "spec.toml"], "--record DB is required"),
        (["sweep", "a.toml", "b.toml", "--record", "x.db"], "one sweep file"),
        (["sweep", "report", "x.db"], "DB NAME"),
        (["sweep", "spec.toml", "--record", "x.db", "--address", "a:1"], "only applies"),
        (["sweep", "spec.toml", "--record", "x.db", "--workers", "0"], "--workers"),
    ],
)
def test_usage_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    _spec(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("spec.toml", "sweep.toml") for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_no_server_is_a_usage_error_not_an_embedded_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    db = tmp_path / "runs.db"
    assert main(["sweep", str(_spec(tmp_path)), "--record", str(db)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert "no server given" in line
    assert "--embedded" in line
    assert not db.exists()
    # --embedded together with a URL is refused as well.
    argv = ["sweep", str(_spec(tmp_path)), "--record", str(db), "--embedded", "--url", "ws://h"]
    assert main(argv) == 2
    assert "mutually exclusive" in capsys.readouterr().err


def test_a_report_of_an_unknown_sweep_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    RunStore.open(tmp_path / "runs.db").close()
    assert main(["sweep", "report", str(tmp_path / "runs.db"), "nope"]) == 1
    assert "no sweep 'nope'" in capsys.readouterr().err


def test_runs_export_and_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_sweep(tmp_path)) == 0
    capsys.readouterr()
    with RunStore.open(tmp_path / "runs.db") as store:
        run_id = store.list_runs()[0].run_id
    exported = tmp_path / "one.simrun"
    assert main(["runs", "export", str(tmp_path / "runs.db"), run_id, "-o", str(exported)]) == 0
    assert capsys.readouterr().out.strip() == str(exported)
    other = tmp_path / "other.db"
    assert main(["runs", "import", str(other), str(exported), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["status"] == "imported"
    assert main(["runs", "verify", str(other), run_id]) == 0
    damaged = tmp_path / "damaged.simrun"
    damaged.write_bytes(exported.read_bytes()[:-7])
    assert main(["runs", "import", str(other), str(damaged)]) == 1
    assert "QUARANTINED" in capsys.readouterr().out
    with RunStore.open(other) as store:
        assert [m.run_id for m in store.list_runs()] == [run_id]


def _report(db: Path, env: dict[str, str]) -> dict[str, Any]:
    report = subprocess.run(
        [sys.executable, "-m", "simtrio", "sweep", "report", str(db), "slow", "--json"],
        cwd=ROOT, env=env, capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    return {c["key"]: c for c in json.loads(report.stdout)["cells"]}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_sweep_keeps_finished_cells_and_resumes(
    tmp_path: Path, signum: signal.Signals
) -> None:
    spec = _spec(
        tmp_path,
        'name = "slow"\nranges = [[30, 60], [0, 2], [10, 12], [20, 22]]\n'
        "[server]\nslot_delay = 0.05\n",
    )
    db = tmp_path / "runs.db"
    env = simtrio_env()
    args = ("sweep", str(spec), "--record", str(db), "--workers", "3", "--embedded")
    proc = spawn(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with reaped(proc):
        seen = wait_for_line(proc.stderr, b": ok (", time.monotonic() + 20)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=20)
    if signum == signal.SIGTERM:
        assert proc.returncode == 130, seen + err
        assert b"run it again to resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    # The runs the driver left open, before anything reopens the store and recovers them.
    with RunStore.open(db, create=False, recover=False) as store:
        left_open = {m.run_id for m in store.list_runs() if m.status.value == "RUNNING"}
    if signum == signal.SIGTERM:
        assert not left_open  # a stopped driver ends every run it began
    finished = _report(db, env)
    assert finished, "no cell was kept"
    assert all(c["outcome"] == "ok" for c in finished.values())
    assert "30-60" not in finished
    # The rerun runs what did not finish, and only that.
    again = subprocess.run([sys.executable, "-m", "simtrio", *args], cwd=ROOT, env=env, capture_output=True, timeout=60,
                           check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert b"cells succeeded earlier and are skipped" in again.stderr
    cells = _report(db, env)
    assert [c["outcome"] for c in cells.values()] == ["ok"] * 4
    assert all(c["attempts"] == 1 for c in cells.values())
    for key, cell in finished.items():
        assert cells[key]["run_id"] == cell["run_id"]
    # A killed driver leaves the runs it had begun (the slow cell's, unless it was killed before
    # that run's first commit) to the store's recovery; a stopped one ends them. A cell whose
    # run had ended but whose ledger row was not yet written runs again; its first run stays in
    # the store, unlabelled.
    with RunStore.open(db) as store:
        statuses = {m.run_id: m.status.value for m in store.list_runs()}
    assert len(statuses) >= 5
    crashed = {run_id for run_id, status in statuses.items() if status == "CRASHED_RECOVERED"}
    assert set(statuses.values()) <= {"ENDED", "CRASHED_RECOVERED"}
    assert crashed <= left_open
    if signum == signal.SIGTERM:
        assert not crashed


def test_the_sweep_file_of_the_guide_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    spec = ROOT / "docs" / "examples" / "sweep.toml"
    argv = ["sweep", str(spec), "--record", str(tmp_path / "runs.db"), "--embedded", "--json"]
    assert main(argv) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["sweep"] == "step-grid"
    assert table["counts"]["ok"] == 4
