// Reads a CAR with @ipld/car and @ipld/dag-cbor (an implementation
// independent of Chronicle's), checks every section's CID against the
// sha256 of its bytes and that every node decodes as strict DAG-CBOR, and
// prints what the archive holds as Old Faithful's schema lays it out.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { CarReader } from '@ipld/car';
import * as dagCbor from '@ipld/dag-cbor';

const bytes = readFileSync(process.argv[2]);
const reader = await CarReader.fromBytes(bytes);
const roots = await reader.getRoots();
const kinds = {};
const blocks = [];
let transactions = 0;
let last = null;
for await (const { cid, bytes: node } of reader.blocks()) {
  const digest = createHash('sha256').update(node).digest();
  if (cid.code !== 0x71 || cid.multihash.code !== 0x12 || Buffer.compare(Buffer.from(cid.multihash.digest), digest) !== 0) {
    throw new Error(`CID ${cid} does not match its node's bytes`);
  }
  const value = dagCbor.decode(node);
  if (!Array.isArray(value) || typeof value[0] !== 'number') throw new Error(`node ${cid} is not a kinded array`);
  kinds[value[0]] = (kinds[value[0]] ?? 0) + 1;
  if (value[0] === 0) transactions += 1;
  if (value[0] === 2) {
    const [, slot, shredding, entries, meta, rewards] = value;
    blocks.push({ slot, entries: entries.length, shredding: shredding.length, parent: meta[0], rewards: rewards.code === 0x55 ? null : rewards.toString() });
  }
  last = cid;
}
console.log(JSON.stringify({
  rootIsLast: roots.length === 1 && roots[0].equals(last),
  kinds,
  transactions,
  blocks,
}));
