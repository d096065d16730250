"""The trio recorder: batching, durability, back-pressure, failures and secrets."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
import trio

from simtrio import events
from simtrio.errors import InvalidParams
from simtrio.params import CreateSession
from simtrio.recording import (
    Plane,
    RecordingClosed,
    RecordingFailed,
    RunStatus,
    RunStore,
    get_run,
    open_recorder,
    read_entries,
)
from simtrio.wire import backtest_errors, encode, rpc_server, types
from tests.recording.helpers import CREATE, PROGRAM_A, TrioDisk, diff, sql

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from simtrio.recording import Recorder
    from simtrio.recording.records import ActiveRun, PendingEntry

API_KEY = "sk_live_7hTq9ZpL2mXvB4nR8cWd"


@pytest.fixture
def trio_disk(monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock) -> TrioDisk:
    """The recorder's disk work runs inline, in the autojump clock's time (see TrioDisk)."""
    return TrioDisk.install(monkeypatch)


def _break_disk(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    """From now on every batch the recorder writes fails with ``error``."""

    def broken(
        self: RunStore, run: ActiveRun, entries: Sequence[PendingEntry], **kw: str | None
    ) -> None:
        raise error

    monkeypatch.setattr(RunStore, "append", broken)


async def test_run_started_is_durable_before_the_body(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with open_recorder(path, create_params=CREATE, server_url="ws://h/backtest") as rec:
        rows = sql(path, "SELECT run_id, status, entry_count FROM runs")
        assert rows == [(rec.run_id, "RUNNING", 1)]
        assert rec.entries_durable == 1
    manifest = get_run(path, rec.run_id)
    assert manifest.status is RunStatus.ENDED
    assert manifest.outcome == "completed"


async def test_entries_and_forms(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    create = CreateSession(100, slot_count=3)
    async with open_recorder(path, create_params=create, server_url="ws://h/backtest") as rec:
        await rec.record_sent(None, create.to_request())
        await rec.record_control("s1", types.SlotNotification(5), seq_id=9)
        await rec.record_control(None, types.SessionEventV2("sub1", 3, types.ReadyForContinue()))
        await rec.record_control("s1", events.Slot(6))
        await rec.record_notification("s1", events.AccountDiff(diff(6)), program_id=PROGRAM_A)
        await rec.record_sent(
            None,
            '{"method":"continueSessionV1","params":{"sessionId":"sub1","request":{"advanceCount":1}}}',
        )
        with pytest.raises(InvalidParams):
            await rec.record_sent(None, '{"method":"nope"}')
        with pytest.raises(InvalidParams):
            await rec.record_control("s1", object())  # type: ignore[arg-type]
    entries = [d.entry for d in read_entries(path, rec.run_id)]
    got = [(e.plane, e.kind, e.session_id, e.topic) for e in entries]
    assert got == [
        (Plane.RUN, "run.started", None, None),
        (Plane.SENT, "createBacktestSession", None, None),
        (Plane.CONTROL, "slotNotification", "s1", None),
        (Plane.CONTROL, "sessionEventV2", "sub1", None),
        (Plane.CONTROL, "event.slotNotification", "s1", None),
        (Plane.DATA, "accountDiffNotification", "s1", PROGRAM_A),
        (Plane.SENT, "continueSessionV1", "sub1", None),
        (Plane.RUN, "run.ended", None, None),
    ]
    assert entries[2].text == '{"seqId":9,"method":"slotNotification","params":5}'
    assert entries[4].text == '{"method":"slotNotification","params":6}'
    assert entries[5].text == rpc_server.encode_rpc(diff(6))
    assert entries[6].text == encode(
        types.ContinueSessionRequestV1("sub1", types.ContinueParams(1))
    )  # request text is stored in its canonical form
    assert [e.seq for e in entries] == list(range(1, 9))
    manifest = get_run(path, rec.run_id)
    assert (manifest.control_count, manifest.data_count, manifest.sent_count) == (3, 1, 2)


async def test_flush_size_commits_without_a_flush_call(tmp_path: Path, trio_disk: TrioDisk) -> None:
    path = tmp_path / "runs.db"
    async with open_recorder(
        path, create_params=None, server_url=None, flush_size=10, flush_interval=3600
    ) as rec:
        for i in range(10):
            await rec.record_control("s", types.SlotNotification(i))
        with trio.fail_after(1):
            while rec.entries_durable < 11:  # noqa: ASYNC110 - durability has no event to await
                await trio.sleep(0.001)  # the writer commits a full batch on its own
        assert sql(path, "SELECT entry_count FROM runs") == [(11,)]
        for i in range(5):
            await rec.record_control("s", types.SlotNotification(i))
        await trio.sleep(0.1)
        assert rec.entries_durable == 11  # below the size and within the interval: waiting
        await rec.flush()
        assert rec.entries_durable == 16


async def test_flush_interval_bounds_the_wait(tmp_path: Path, trio_disk: TrioDisk) -> None:
    path = tmp_path / "runs.db"
    async with open_recorder(
        path, create_params=None, server_url=None, flush_size=1000, flush_interval=0.3
    ) as rec:
        started = trio.current_time()
        await rec.record_control("s", types.SlotNotification(1))
        await trio.sleep(0.05)
        assert rec.entries_durable == 1  # not yet: the interval has not passed
        with trio.fail_after(2):
            while rec.entries_durable < 2:  # noqa: ASYNC110 - durability has no event to await
                await trio.sleep(0.01)
        assert trio.current_time() - started >= 0.3


async def test_record_calls_never_wait_for_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_free = threading.Event()
    original = RunStore.append

    def stuck(
        self: RunStore, run: ActiveRun, entries: Sequence[PendingEntry], **kw: str | None
    ) -> None:
        disk_free.wait(30)  # the writer thread is stuck until the test lets it go
        original(self, run, entries, **kw)

    path = tmp_path / "runs.db"
    async with open_recorder(path, create_params=None, server_url=None, flush_size=1) as rec:
        monkeypatch.setattr(RunStore, "append", stuck)
        with trio.fail_after(10):  # trips only if a record call waits for the disk
            for i in range(200):
                await rec.record_control("s", types.SlotNotification(i))
        assert rec.entries_recorded == 201  # run.started and the 200, all in memory
        assert rec.entries_durable == 1  # while the disk has not finished one batch
        disk_free.set()
        await rec.flush()
        assert rec.entries_durable == 201
    assert get_run(path, rec.run_id).entry_count == 202  # with run.ended


async def test_backpressure_bounds_what_waits_in_memory(
    tmp_path: Path, trio_disk: TrioDisk
) -> None:
    trio_disk.latency = 0.02  # a slow disk: each write takes 20 ms
    path = tmp_path / "runs.db"
    async with open_recorder(
        path, create_params=None, server_url=None, flush_size=4, max_pending=8
    ) as rec:
        worst = 0
        for i in range(60):
            await rec.record_control("s", types.SlotNotification(i))
            worst = max(worst, rec.entries_recorded - rec.entries_durable)
        assert worst <= 9
    assert get_run(path, rec.run_id).entry_count == 62


async def test_writer_failure_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    recorders: list[Recorder] = []

    async def run() -> None:
        async with open_recorder(path, create_params=None, server_url=None, flush_size=2) as rec:
            recorders.append(rec)
            _break_disk(monkeypatch, OSError(28, "No space left on device"))
            for i in range(5):
                rec.record_control_nowait("s", types.SlotNotification(i))
            await trio.sleep_forever()  # cancelled by the writer's failure

    with pytest.raises(RecordingFailed) as caught:
        await run()
    [rec] = recorders
    error = caught.value
    assert "No space left on device" in str(error)
    assert error.durable == 1  # run.started only
    assert error.unwritten == 5  # every accepted entry is accounted for
    with pytest.raises(RecordingFailed):
        rec.record_control_nowait("s", types.SlotNotification(9))
    monkeypatch.undo()
    with RunStore.open(path) as store:  # the recorder closed the run itself, as an error
        assert store.recovered == ()
        manifest = store.get_run(rec.run_id)
        assert manifest.status is RunStatus.CRASHED_RECOVERED
        assert (manifest.outcome, manifest.entry_count) == ("error", 1)
        assert manifest.problem is not None
        assert "No space left on device" in manifest.problem


async def test_writer_failure_reaches_record_and_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"

    async def run() -> None:
        async with open_recorder(path, create_params=None, server_url=None) as rec:
            _break_disk(monkeypatch, OSError(5, "Input/output error"))
            await rec.record_control("s", types.SlotNotification(1))
            with pytest.raises(RecordingFailed):
                await rec.flush()
            with pytest.raises(RecordingFailed):
                await rec.record_control("s", types.SlotNotification(2))
            raise RuntimeError("the body's own error is not what matters here")

    with pytest.raises(RecordingFailed, match="Input/output error"):
        await run()


async def test_writer_failure_while_the_body_waits_for_room_is_raised_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trio_disk: TrioDisk
) -> None:
    # The body, held by back-pressure, raises the writer's own failure object too: the block
    # still ends with that one RecordingFailed, not with a group holding it twice.
    path = tmp_path / "runs.db"

    async def run() -> None:
        async with open_recorder(
            path, create_params=None, server_url=None, flush_size=1, max_pending=1
        ) as rec:
            _break_disk(monkeypatch, OSError(28, "No space left on device"))
            for i in range(5):
                await rec.record_control("s", types.SlotNotification(i))

    with pytest.raises(RecordingFailed, match="No space left on device") as caught:
        await run()
    assert type(caught.value) is RecordingFailed


async def test_body_error_ends_the_run_with_its_outcome(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    recorders: list[Recorder] = []

    async def run() -> None:
        async with open_recorder(path, create_params=None, server_url=None) as rec:
            recorders.append(rec)
            await rec.record_control("s", types.SlotNotification(1))
            raise KeyError("strategy bug")

    with pytest.raises(KeyError):
        await run()
    [rec] = recorders
    manifest = get_run(path, rec.run_id)
    assert (manifest.status, manifest.outcome, manifest.entry_count) == (
        RunStatus.ENDED,
        "error",
        3,
    )
    ended = read_entries(path, rec.run_id)[-1].value
    assert ended == {"outcome": "error", "error": "KeyError", "entries": 3}
    with pytest.raises(RecordingClosed):
        await rec.record_control("s", types.SlotNotification(2))


async def test_cancelled_run_still_ends(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with trio.CancelScope() as scope:
        async with open_recorder(path, create_params=None, server_url=None) as rec:
            await rec.record_control("s", types.SlotNotification(1))
            scope.cancel()
            await trio.sleep_forever()
    manifest = get_run(path, rec.run_id)
    assert (manifest.status, manifest.outcome, manifest.entry_count) == (
        RunStatus.ENDED,
        "cancelled",
        3,
    )


async def test_a_run_cancelled_inside_a_nursery_ends_as_cancelled(tmp_path: Path) -> None:
    # A managed session cancelled in its block raises a group of Cancelled from its nurseries.
    path = tmp_path / "runs.db"
    with trio.CancelScope() as scope:
        async with (
            open_recorder(path, create_params=None, server_url=None) as rec,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(trio.sleep_forever)
            scope.cancel()
            await trio.sleep_forever()
    assert get_run(path, rec.run_id).outcome == "cancelled"
    assert read_entries(path, rec.run_id)[-1].value == {
        "outcome": "cancelled",
        "error": None,
        "entries": 2,
    }


async def test_parent_run_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with open_recorder(path, create_params=None, server_url=None) as parent:
        pass
    async with open_recorder(
        path, create_params=None, server_url=None, parent_run_id=parent.run_id
    ) as child:
        pass
    assert get_run(path, child.run_id).parent_run_id == parent.run_id
    assert child.run_id > parent.run_id
    with pytest.raises(InvalidParams):
        async with open_recorder(path, create_params=None, server_url=None, flush_size=0):
            pass


def _all_file_bytes(directory: Path) -> bytes:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files
    return b"".join(p.read_bytes() for p in files)


async def test_api_key_never_reaches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    url = f"wss://user:{API_KEY}@sim.example/backtest?api_key={API_KEY}"
    key_bytes = API_KEY.encode()
    async with open_recorder(
        path, create_params=CREATE, server_url=url, secrets=[API_KEY], flush_size=1
    ) as rec:
        await rec.record_sent(None, CREATE)
        # A server that echoes the key back in an error: redacted before it is written.
        echo = types.Error(backtest_errors.InvalidRequest(f"bad key {API_KEY}"))
        await rec.record_control("s", echo)
        await rec.record_notification("s", diff(1), program_id=PROGRAM_A)
        await rec.flush()
        assert key_bytes not in _all_file_bytes(tmp_path)  # database and WAL while live
    assert key_bytes not in _all_file_bytes(tmp_path)
    for decoded in read_entries(path, rec.run_id):
        assert key_bytes not in decoded.entry.payload
    manifest = get_run(path, rec.run_id)
    assert API_KEY not in repr(manifest)
    assert API_KEY not in str(manifest.to_json())
    assert "<redacted>" in read_entries(path, rec.run_id)[2].entry.text
