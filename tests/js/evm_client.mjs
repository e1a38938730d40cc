// viem (a stock EVM client from npm) reads chronicle serve exactly as it
// reads the node, for tests/evm.rs: every block of the range with and
// without transactions, by number and by hash, every transaction and
// receipt, the token's Transfer logs; the answers must be equal.
// Usage: node evm_client.mjs SERVE_URL NODE_URL FROM TO TOKEN
import { createPublicClient, http, parseAbiItem } from "viem";
import { foundry } from "viem/chains";

const [serveUrl, nodeUrl, from, to, token] = process.argv.slice(2);
const ours = createPublicClient({ chain: foundry, transport: http(serveUrl) });
const node = createPublicClient({ chain: foundry, transport: http(nodeUrl) });
// Compared as values: the order of an object's keys is not part of an answer.
const sorted = (v) =>
  v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v;
const text = (value) => JSON.stringify(value, (_, v) => sorted(typeof v === "bigint" ? v.toString() : v));
const same = (what, a, b) => {
  if (text(a) !== text(b)) throw new Error(`${what} differs:\nserve: ${text(a)}\nnode:  ${text(b)}`);
};

let transactions = 0;
for (let n = BigInt(from); n <= BigInt(to); n++) {
  const block = await ours.getBlock({ blockNumber: n, includeTransactions: true });
  same(`block ${n}`, block, await node.getBlock({ blockNumber: n, includeTransactions: true }));
  same(`block ${n} by hash`, await ours.getBlock({ blockHash: block.hash }), await node.getBlock({ blockHash: block.hash }));
  for (const tx of block.transactions) {
    same(`transaction ${tx.hash}`, await ours.getTransaction({ hash: tx.hash }), await node.getTransaction({ hash: tx.hash }));
    same(
      `receipt ${tx.hash}`,
      await ours.getTransactionReceipt({ hash: tx.hash }),
      await node.getTransactionReceipt({ hash: tx.hash }),
    );
    transactions++;
  }
}
const transfer = parseAbiItem("event Transfer(address indexed from, address indexed to, uint256 value)");
const range = { fromBlock: BigInt(from), toBlock: BigInt(to) };
const logs = await ours.getLogs({ address: token, event: transfer, ...range });
same("Transfer logs", logs, await node.getLogs({ address: token, event: transfer, ...range }));
if (logs.length < 3) throw new Error(`expected the token's Transfer logs, got ${logs.length}`);
same("chain id", await ours.getChainId(), await node.getChainId());
console.log(`viem read ${BigInt(to) - BigInt(from) + 1n} blocks, ${transactions} transactions and ${logs.length} Transfer logs as the node answers them`);
