"""Acting on the chain: fund a keypair, send a system transfer in a continue, read the results."""

import simtrio
import trio
from simtrio import events
from simtrio.server import serve
from solders.keypair import Keypair
from solders.system_program import ID as SYSTEM_PROGRAM, TransferParams, transfer
from solders.transaction import Transaction

LAMPORTS_PER_SOL = 1_000_000_000


async def main() -> None:
    async with serve(seed=7) as server:
        create = simtrio.CreateSession(4000, end_slot=4009, disconnect_timeout_secs=60)
        async with simtrio.open_managed_session(server.url, "", create) as session:
            session.subscribe_transactions([str(SYSTEM_PROGRAM)])
            session.subscribe_program_logs([str(SYSTEM_PROGRAM)])
            payer = Keypair.from_seed(bytes(32))
            recipient = Keypair.from_seed(bytes([1] * 32)).pubkey()
            async with session.rpc() as rpc:
                await rpc.request_airdrop(payer.pubkey(), 2 * LAMPORTS_PER_SOL)
                blockhash = await rpc.get_latest_blockhash()
                pay = transfer(
                    TransferParams(
                        from_pubkey=payer.pubkey(), to_pubkey=recipient, lamports=1_000_000
                    )
                )
                tx = Transaction.new_signed_with_payer([pay], payer.pubkey(), [payer], blockhash)
                signature = str(tx.signatures[0])
                sent = False
                async for event in session.events():
                    match event:
                        case events.ReadyForContinue() if not sent:
                            # The transfer executes in the first slot of this step.
                            await session.send_continue(simtrio.Continue(1, transactions=[tx]))
                            sent = True
                        case events.ReadyForContinue():
                            await session.send_continue(simtrio.Continue(10))
                        case events.Transaction(notification=note):
                            found = note.transaction
                            if signature in found["transaction"]["signatures"]:
                                print("transaction at slot", note.slot, "err:", found["meta"]["err"])
                        case events.ProgramLogs(signature=logged, logs=lines) if logged == signature:
                            print("logs:", lines[0])
                        case events.Completed():
                            break
                (status,) = await rpc.get_signature_statuses([tx.signatures[0]])
                assert status is not None
                print("status err:", status.err)
                print("payer:", await rpc.get_balance(payer.pubkey()))
                print("recipient:", await rpc.get_balance(recipient))


if __name__ == "__main__":
    trio.run(main)
