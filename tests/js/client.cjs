// @solana/web3.js against `chronicle serve`: each history method, checked
// against the values the Rust test passes in (taken from recorded node responses).
// Usage: node client.cjs URL EXPECTED_JSON
const assert = require('node:assert/strict');
const { Connection, PublicKey } = require('@solana/web3.js');

async function main() {
  const [url, expectedPath] = process.argv.slice(2);
  const expected = JSON.parse(require('node:fs').readFileSync(expectedPath, 'utf8'));
  const connection = new Connection(url, 'finalized');

  const block = await connection.getBlock(expected.slot, { maxSupportedTransactionVersion: 0 });
  assert.equal(block.blockhash, expected.blockhash);
  assert.equal(block.parentSlot, expected.parentSlot);
  assert.equal(block.blockTime, expected.blockTime);
  assert.equal(block.transactions.length, expected.signatures.length);
  assert.deepEqual(block.transactions.map((t) => t.transaction.signatures[0]), expected.signatures);

  const parsed = await connection.getParsedBlock(expected.slot, { maxSupportedTransactionVersion: 0 });
  assert.equal(parsed.transactions.length, expected.signatures.length);

  const signatures = await connection.getBlockSignatures(expected.slot);
  assert.deepEqual(signatures.signatures, expected.signatures);

  const tx = await connection.getTransaction(expected.signatures[0], { maxSupportedTransactionVersion: 0 });
  assert.equal(tx.slot, expected.slot);
  assert.equal(tx.meta.fee, expected.firstFee);

  const parsedTx = await connection.getParsedTransaction(expected.signatures[0], { maxSupportedTransactionVersion: 0 });
  assert.equal(parsedTx.slot, expected.slot);

  const history = await connection.getSignaturesForAddress(new PublicKey(expected.address), { limit: 1000 });
  assert.deepEqual(history.map((h) => h.signature), expected.addressSignatures);

  assert.deepEqual(await connection.getBlocks(expected.slot - 3, expected.slot + 3), [expected.slot]);
  assert.equal(await connection.getBlockTime(expected.slot), expected.blockTime);
  assert.equal(await connection.getFirstAvailableBlock(), expected.firstAvailable);

  const statuses = await connection.getSignatureStatuses(expected.signatures, { searchTransactionHistory: true });
  assert.equal(statuses.value.length, expected.signatures.length);
  for (const status of statuses.value) {
    assert.equal(status.slot, expected.slot);
    assert.equal(status.confirmationStatus, 'finalized');
  }

  // What clients call around history, from the stored tip.
  const version = await connection.getVersion();
  assert.equal(version['solana-core'], '4.2.2');
  assert.equal(await connection.getGenesisHash(), expected.genesisHash);
  assert.equal(await connection.getSlot(), expected.slot);
  assert.equal(await connection.getBlockHeight(), expected.blockHeight);
  assert.equal(await connection.getMinimumLedgerSlot(), expected.firstAvailable);
  const latest = await connection.getLatestBlockhash();
  assert.deepEqual(latest, { blockhash: expected.blockhash, lastValidBlockHeight: expected.blockHeight + 150 });
  assert.equal((await connection.isBlockhashValid(expected.blockhash)).value, true);
  const epoch = await connection.getEpochInfo();
  assert.equal(epoch.epoch, Math.floor(expected.slot / 432000));
  assert.equal(epoch.absoluteSlot, expected.slot);
  const schedule = await connection.getEpochSchedule();
  assert.equal(schedule.slotsPerEpoch, 432000);

  // Past the newest stored slot, and before the first: the node's errors.
  await assert.rejects(connection.getBlock(expected.slot + 1, { maxSupportedTransactionVersion: 0 }), /Block not available for slot/);
  await assert.rejects(connection.getBlock(expected.slot - 1, { maxSupportedTransactionVersion: 0 }), /cleaned up, does not exist on node/);
  console.log('web3.js: all history methods answered as recorded');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
