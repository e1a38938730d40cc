// Drives a real anvil node for tests/evm.rs with viem: ether transfers, an
// ERC-20 (tests/evm/Token.sol, compiled here with solc-js) deployed and
// called, one failed call; then mines enough blocks that all of it is final
// (anvil's `finalized` is 64 blocks behind its head). Prints what it did as JSON.
// Usage: node evm_drive.mjs NODE_URL TOKEN_SOL
import { readFileSync } from "node:fs";
import solc from "solc";
import { createTestClient, createWalletClient, createPublicClient, http, parseEther, parseAbi } from "viem";
import { foundry } from "viem/chains";

const [url, source] = process.argv.slice(2);
const input = {
  language: "Solidity",
  sources: { "Token.sol": { content: readFileSync(source, "utf8") } },
  settings: { optimizer: { enabled: true, runs: 200 }, outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } } },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join("\n"));
const { abi, evm } = output.contracts["Token.sol"].Token;

const transport = http(url);
const chain = foundry;
const wallet = createWalletClient({ chain, transport });
const node = createPublicClient({ chain, transport });
const test = createTestClient({ chain, transport, mode: "anvil" });
const [alice, bob, carol] = await wallet.getAddresses();
const hashes = [];
const mined = async (hash) => {
  hashes.push(hash);
  return node.waitForTransactionReceipt({ hash });
};

await mined(await wallet.sendTransaction({ account: alice, to: bob, value: parseEther("1.5") }));
await mined(await wallet.sendTransaction({ account: bob, to: carol, value: parseEther("0.25") }));
const deployed = await mined(
  await wallet.deployContract({ account: alice, abi, bytecode: `0x${evm.bytecode.object}`, args: [10n ** 24n] }),
);
const token = deployed.contractAddress;
const erc20 = parseAbi(["function transfer(address,uint256) returns (bool)", "function approve(address,uint256) returns (bool)"]);
await mined(await wallet.writeContract({ account: alice, address: token, abi: erc20, functionName: "transfer", args: [bob, 5000n] }));
await mined(await wallet.writeContract({ account: bob, address: token, abi: erc20, functionName: "transfer", args: [carol, 1200n] }));
await mined(await wallet.writeContract({ account: carol, address: token, abi: erc20, functionName: "approve", args: [alice, 7n] }));
// A call that reverts still lands in a block, with status 0.
const failed = await wallet.sendTransaction({
  account: carol,
  to: token,
  gas: 100000n,
  data: "0xa9059cbb" + bob.slice(2).padStart(64, "0") + (10n ** 30n).toString(16).padStart(64, "0"),
});
const failedReceipt = await mined(failed);
// Several transactions in one block.
await test.setAutomine(false);
const batch = [];
for (const value of [1n, 2n, 3n]) batch.push(await wallet.sendTransaction({ account: alice, to: carol, value }));
await test.mine({ blocks: 1 });
await test.setAutomine(true);
for (const hash of batch) await mined(hash);
await test.mine({ blocks: 70 });
const head = await node.getBlockNumber();
console.log(JSON.stringify({ token, transactions: hashes, failed: failedReceipt.status, head: Number(head) }));
