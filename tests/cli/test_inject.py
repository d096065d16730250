"""``run --program-id ID --program-so PATH`` and ``--subscriptions logs`` against the
executing embedded server."""

from __future__ import annotations

import base64
import json
import struct
from typing import TYPE_CHECKING

import pytest
import trio
from solders.pubkey import Pubkey

import simtrio
from simtrio.cli.main import main
from simtrio.recording import Plane, list_runs, read_entries
from simtrio.server import serve
from simtrio.wire import types
from simtrio.wire.programs import programdata_address

if TYPE_CHECKING:
    from pathlib import Path

MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
NEW_ID = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


@pytest.fixture(scope="module")
def memo_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ELF of a program the embedded server ships, as a ``.so`` file."""

    async def fetch() -> bytes:
        async with serve() as server:
            client = simtrio.BacktestClient(server.url, "")
            create = simtrio.CreateSession(4000, end_slot=4001)
            async with client.create_session(create) as session, session.rpc() as rpc:
                await session.ensure_ready()
                account = await rpc.get_account_info(MEMO)
                assert account is not None
                return bytes(account.data)

    path = tmp_path_factory.mktemp("programs") / "memo.so"
    path.write_bytes(trio.run(fetch))
    return path


def _first_continues(db: Path) -> dict[str, list[types.ContinueParams]]:
    (run,) = list_runs(db)
    sent: dict[str, list[types.ContinueParams]] = {}
    for decoded in read_entries(db, run.run_id):
        value = decoded.value
        if decoded.entry.plane is Plane.SENT and isinstance(value, types.ContinueSessionRequestV1):
            sent.setdefault(value.session_id, []).append(value.request)
    return sent


def test_program_so_is_injected_before_the_first_step_of_every_sub_session(
    tmp_path: Path, memo_elf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    out = tmp_path / "run.ndjson"
    argv = ["run", "--embedded", "--start-slot", "1000", "--end-slot", "1149", "--step", "10"]
    argv += ["--program-id", NEW_ID, "--program-so", str(memo_elf), "--record", str(db)]
    argv += ["--output-file", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    starts = {s["session_id"]: s["start_slot"] for s in summary["sessions"]}
    assert sorted(starts.values()) == [1000, 1100]
    elf = memo_elf.read_bytes()
    programdata = str(programdata_address(NEW_ID))
    for session_id, continues in _first_continues(db).items():
        first, *rest = continues
        assert set(first.modify_account_states) == {programdata, NEW_ID}
        assert all(not c.modify_account_states for c in rest)  # only before the first step
        blob = base64.b64decode(first.modify_account_states[programdata].data.data)
        tag, deploy_slot = struct.unpack_from("<IQ", blob)
        assert (tag, deploy_slot) == (3, starts[session_id] - 1)
        assert blob[45:] == elf
        program = first.modify_account_states[NEW_ID]
        assert program.executable
        assert base64.b64decode(program.data.data)[4:] == bytes(Pubkey.from_string(programdata))
    meta = json.loads(out.read_text().splitlines()[0])["data"]
    assert meta["program_ids"] == [NEW_ID]
    assert meta["program_so"] == [str(memo_elf)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--program-so", "{elf}"], "--program-so given 1 times but --program-id only 0"),
        (["--program-id", NEW_ID, "--program-so", "{missing}"], "cannot read"),
        (["--program-id", NEW_ID, "--program-so", "{not_elf}"], "not an ELF file"),
        (["--program-id", "not-an-address", "--program-so", "{elf}"], "--program-id"),
    ],
)
def test_bad_program_builds_are_usage_errors(
    tmp_path: Path,
    memo_elf: Path,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    not_elf = tmp_path / "x.so"
    not_elf.write_bytes(b"MZ not a program")
    paths = {"elf": memo_elf, "missing": tmp_path / "none.so", "not_elf": not_elf}
    argv = ["run", "--embedded", "--start-slot", "1000", "--end-slot", "1009"]
    argv += [arg.format(**paths) for arg in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_logs_subscription_counts_and_writes_program_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.ndjson"
    argv = ["run", "--embedded", "--start-slot", "1000", "--end-slot", "1049"]
    argv += ["--subscriptions", "logs", "--output-file", str(out), "--format", "simtrio", "--json"]
    assert main(argv) == 0
    totals = json.loads(capsys.readouterr().out.splitlines()[-1])["totals"]
    assert totals["logs"] > 0
    assert totals["transactions"] is None  # not subscribed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    logs = [r for r in records if r["type"] == "logs"]
    assert len(logs) == totals["logs"]
    assert all(r["logs"] and r["program_id"] and r["signature"] for r in logs)
