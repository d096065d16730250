"""RPC calls and logs are recorded with a managed run and answered again by its replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
from solders.keypair import Keypair

from simtrio import events, server
from simtrio.errors import RpcError
from simtrio.managed.session import open_managed_session
from simtrio.params import Continue
from simtrio.recording import ReplayDivergence, open_recorder, replay_server
from simtrio.wire.types import CreateBacktestSessionRequest

if TYPE_CHECKING:
    from pathlib import Path

CREATE = CreateBacktestSessionRequest(start_slot=100, end_slot=104, disconnect_timeout_secs=30)
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
PAYER = Keypair.from_seed(bytes([4] * 32)).pubkey()


async def _strategy(url: str, path: Path | None, *, lamports: int = 10**9) -> list[object]:
    """Read state and act through the RPC at every readiness; note everything seen."""
    seen: list[object] = []

    async def run(recorder: object) -> None:
        async with open_managed_session(url, "", CREATE, recorder=recorder) as session:  # type: ignore[arg-type]
            session.subscribe_program_logs([TOKEN])
            async with session.rpc() as rpc:
                async for event in session.events():
                    if isinstance(event, events.ProgramLogs):
                        seen.append(("logs", event.slot, event.signature, event.logs))
                    elif isinstance(event, events.ReadyForContinue):
                        seen.append(("slot", await rpc.get_slot()))
                        seen.append(("airdrop", str(await rpc.request_airdrop(PAYER, lamports))))
                        seen.append(("balance", await rpc.get_balance(PAYER)))
                        await session.send_continue(Continue(2))

    with trio.fail_after(15):
        if path is None:
            await run(None)
        else:
            async with open_recorder(path, create_params=CREATE, server_url=url) as rec:
                await run(rec)
                seen.append(rec.run_id)
    return seen


async def _record(path: Path) -> tuple[list[object], str]:
    """Record the strategy against a reference server: what it saw, and the run's id."""
    async with server.serve(seed=11) as reference:
        live = await _strategy(reference.url, path)
    run_id = live.pop()
    assert isinstance(run_id, str)
    return live, run_id


async def test_rpc_and_logs_replay_from_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    live, run_id = await _record(path)
    assert any(item[0] == "logs" for item in live)  # type: ignore[index]
    assert any(item[0] == "airdrop" for item in live)  # type: ignore[index]

    async with replay_server(path, run_id) as replay:
        replayed = await _strategy(replay.url, None)
        assert replay.divergence is None

    # Data and control interleave as the connections go; each in its own order is the same.
    def split(seen: list[object]) -> tuple[list[object], list[object]]:
        logs = [item for item in seen if item[0] == "logs"]  # type: ignore[index]
        return logs, [item for item in seen if item not in logs]

    assert split(replayed) == split(live)


async def test_a_differing_rpc_call_is_a_divergence(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    _, run_id = await _record(path)

    async with replay_server(path, run_id, raise_on_divergence=False) as replay:
        with pytest.raises(RpcError) as rpc_error:
            await _strategy(replay.url, None, lamports=5)
        assert rpc_error.value.code == -32000
        with pytest.raises(ReplayDivergence) as info:
            replay.check()
    assert "rpc call 2" in str(info.value)
    assert info.value.expected is not None
    assert "requestAirdrop" in info.value.expected
