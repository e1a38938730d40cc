"""solana-py (PyPI `solana`, with `solders`) against `chronicle serve`: what
an application calls on connect and around history, checked against the
values the Rust test passes in (taken from recorded node responses).
Usage: python3 client.py URL EXPECTED_JSON"""

import asyncio
import json
import sys

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Finalized
from solders.pubkey import Pubkey
from solders.signature import Signature


async def main(url: str, expected: dict) -> None:
    async with AsyncClient(url, commitment=Finalized) as client:
        assert await client.is_connected(), "getHealth"
        assert (await client.get_version()).value.solana_core == "4.2.2"
        assert str((await client.get_genesis_hash()).value) == expected["genesisHash"]
        assert (await client.get_slot()).value == expected["slot"]
        assert (await client.get_block_height()).value == expected["blockHeight"]
        assert (await client.get_minimum_ledger_slot()).value == expected["firstAvailable"]
        latest = (await client.get_latest_blockhash()).value
        assert str(latest.blockhash) == expected["blockhash"]
        assert latest.last_valid_block_height == expected["blockHeight"] + 150
        epoch = (await client.get_epoch_info()).value
        assert (epoch.epoch, epoch.absolute_slot) == (expected["slot"] // 432000, expected["slot"])
        assert (await client.get_epoch_schedule()).value.slots_per_epoch == 432000

        block = (await client.get_block(expected["slot"], max_supported_transaction_version=0)).value
        assert str(block.blockhash) == expected["blockhash"]
        assert [str(t.transaction.signatures[0]) for t in block.transactions] == expected["signatures"]
        tx = (await client.get_transaction(Signature.from_string(expected["signatures"][0]),
                                           max_supported_transaction_version=0)).value
        assert tx.slot == expected["slot"]
        history = (await client.get_signatures_for_address(Pubkey.from_string(expected["address"]), limit=1000)).value
        assert [str(h.signature) for h in history] == expected["addressSignatures"]
        assert (await client.get_blocks(expected["slot"] - 3, expected["slot"] + 3)).value == [expected["slot"]]
    print("solana-py: all methods answered as recorded")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.load(open(sys.argv[2]))))
