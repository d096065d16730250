"""Injecting a program: a default program's ELF, loaded under a new id, then invoked."""

import simtrio
import trio
from simtrio.server import serve
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction

# SPL Memo v2 is a default program; its account data is its ELF.
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


async def main() -> None:
    async with serve(seed=7) as server:
        client = simtrio.BacktestClient(server.url, "", request_timeout=10)
        create = simtrio.CreateSession(4000, end_slot=4009)
        async with client.create_session(create) as session, session.rpc() as rpc:
            await session.ensure_ready()
            memo = await rpc.get_account_info(MEMO)
            assert memo is not None
            new_id = Keypair.from_seed(bytes([9] * 32)).pubkey()
            # Program + ProgramData accounts, funded with the rent the RPC asks for.
            states = await simtrio.modify_program(
                rpc, new_id, bytes(memo.data), start_slot=4000, create=True
            )
            await session.advance(simtrio.Continue(1, modify_account_states=states))

            payer = Keypair.from_seed(bytes([3] * 32))
            await rpc.request_airdrop(payer.pubkey(), 10**9)
            invoke = Instruction(new_id, b"hello from an injected program", [])
            blockhash = await rpc.get_latest_blockhash()
            tx = Transaction.new_signed_with_payer([invoke], payer.pubkey(), [payer], blockhash)
            simulated = await rpc.simulate_transaction(tx)
            print("simulated err:", simulated.err)
            await session.advance(simtrio.Continue(1, transactions=[tx]))
            executed = await rpc.get_transaction(tx.signatures[0])
            assert executed is not None
            print("executed err:", executed["meta"]["err"])
            for line in executed["meta"]["logMessages"]:
                print(line)


if __name__ == "__main__":
    trio.run(main)
