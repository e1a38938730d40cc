// @solana/kit (the successor of web3.js) against `chronicle serve`: the calls
// an application makes on connect and around history, checked against the
// values the Rust test passes in (taken from recorded node responses).
// Usage: node kit_client.mjs URL EXPECTED_JSON
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { address, blockhash, createSolanaRpc, signature } from '@solana/kit';

const [url, expectedPath] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedPath, 'utf8'));
const rpc = createSolanaRpc(url);

assert.equal(await rpc.getHealth().send(), 'ok');
assert.equal((await rpc.getVersion().send())['solana-core'], '4.2.2');
assert.equal(await rpc.getGenesisHash().send(), expected.genesisHash);
assert.equal(await rpc.getSlot().send(), BigInt(expected.slot));
assert.equal(await rpc.getBlockHeight().send(), BigInt(expected.blockHeight));
assert.equal(await rpc.minimumLedgerSlot().send(), BigInt(expected.firstAvailable));
const latest = await rpc.getLatestBlockhash().send();
assert.equal(latest.context.slot, BigInt(expected.slot));
assert.equal(latest.value.blockhash, expected.blockhash);
assert.equal(latest.value.lastValidBlockHeight, BigInt(expected.blockHeight + 150));
assert.equal((await rpc.isBlockhashValid(blockhash(expected.blockhash)).send()).value, true);

const block = await rpc.getBlock(BigInt(expected.slot), { maxSupportedTransactionVersion: 0 }).send();
assert.equal(block.blockhash, expected.blockhash);
assert.deepEqual(block.transactions.map((t) => t.transaction.signatures[0]), expected.signatures);
const tx = await rpc.getTransaction(signature(expected.signatures[0]), { maxSupportedTransactionVersion: 0 }).send();
assert.equal(tx.slot, BigInt(expected.slot));
assert.equal(tx.meta.fee, BigInt(expected.firstFee));
const history = await rpc.getSignaturesForAddress(address(expected.address), { limit: 1000 }).send();
assert.deepEqual(history.map((h) => h.signature), expected.addressSignatures);
assert.deepEqual(await rpc.getBlocks(BigInt(expected.slot - 3), BigInt(expected.slot + 3)).send(), [BigInt(expected.slot)]);
const statuses = await rpc.getSignatureStatuses([signature(expected.signatures[0])], { searchTransactionHistory: true }).send();
assert.equal(statuses.value[0].confirmationStatus, 'finalized');
console.log('kit: all methods answered as recorded');
