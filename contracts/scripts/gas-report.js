// Measures the gas of cod's JobManager operations on Hardhat's in-process network and writes
// bench/results/gas.md and bench/results/gas.json at the repository root.
// Run: npx hardhat run scripts/gas-report.js   (or: npm run gas)
"use strict";

const fs = require("fs");
const path = require("path");
const hre = require("hardhat");
const { ethers } = hre;

const OUT_DIR = path.join(__dirname, "..", "..", "bench", "results");
const FEE = ethers.parseEther("0.001");
const CID_IN = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
const CID_OUT = "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va";
const PREFIX =
  '{"engine":"docker","image":"cod/stage:latest","entrypoint":["python3","/app/run.py","--mode","full"],' +
  '"env":{"STAGE":"1","LOG_LEVEL":"info"},"inputs":[{"source":"ipfs://';
const SUFFIX =
  '","target":"/inputs/data"}],"outputs":[{"name":"outputs","path":"/outputs"}],' +
  '"resources":{"cpu":"1","memory":"512Mi","disk":"1Gi","gpu":0},"network":"none","timeout":600}';
const SPEC = PREFIX + CID_IN + SUFFIX;

async function gasOf(txPromise) {
  const receipt = await (await txPromise).wait();
  return Number(receipt.gasUsed);
}

async function main() {
  const [owner, oracle, requester] = await ethers.getSigners();
  const manager = await (await ethers.getContractFactory("JobManager")).deploy(FEE, 3600, 2_000_000);
  await manager.setOracle(oracle.address, true);
  const probe = await (await ethers.getContractFactory("GasProbeConsumer")).deploy();
  const pipeline = await (await ethers.getContractFactory("TwoStagePipeline")).deploy(
    await manager.getAddress(), PREFIX, SUFFIX, PREFIX, SUFFIX, FEE, 500_000,
  );
  const req = (consumer = ethers.ZeroAddress, gas = 0) =>
    manager.connect(requester).requestJob(SPEC, consumer, gas, { value: FEE });
  const rows = [];
  const add = (operation, gas, note) => rows.push({ operation, gas, note });

  // warm-up: the first request ever also initialises totalEscrowed
  add("requestJob (first ever)", await gasOf(req()), `${SPEC.length}-byte spec, no consumer`);
  add("requestJob", await gasOf(req()), `${SPEC.length}-byte spec, no consumer`);
  add("requestJob (with consumer)", await gasOf(req(await probe.getAddress(), 100_000)), "consumer + callback gas limit");
  await req(); // job 4: a second job without consumer
  add("fulfillJob (no consumer, oracle's first credit)", await gasOf(manager.connect(oracle).fulfillJob(1n, CID_OUT, 0)),
    "59-char CIDv1; withdrawable slot goes 0 → non-zero");
  add("fulfillJob (no consumer)", await gasOf(manager.connect(oracle).fulfillJob(4n, CID_OUT, 0)),
    "59-char CIDv1; oracle already has a balance");
  add("fulfillJob (trivial consumer)", await gasOf(manager.connect(oracle).fulfillJob(3n, CID_OUT, 0)),
    "callback does one SSTORE");
  add("failJob (no consumer)", await gasOf(manager.connect(oracle).failJob(2n, "image not found")), "refund to requester");

  add("TwoStagePipeline.start", await gasOf(pipeline.start(CID_IN, { value: 2n * FEE })), "requests stage 1 (job 5)");
  add("fulfillJob (chaining: TwoStagePipeline stage 1)",
    await gasOf(manager.connect(oracle).fulfillJob(5n, CID_OUT, 0)),
    "callback requests stage 2 (job 6)");
  add("fulfillJob (TwoStagePipeline stage 2, final)",
    await gasOf(manager.connect(oracle).fulfillJob(6n, CID_IN, 0)), "callback records the final CID");

  await req(); // job 7
  await hre.network.provider.send("evm_increaseTime", [3601]);
  add("cancelJob", await gasOf(manager.connect(requester).cancelJob(7n)), "after the deadline");
  add("withdraw", await gasOf(manager.connect(requester).withdraw()), "refunds to an EOA");
  add("withdraw (oracle)", await gasOf(manager.connect(oracle).withdraw()), "fees to an EOA");

  const meta = {
    solc: require("solc").version(),
    optimizer: hre.config.solidity.compilers[0].settings.optimizer,
    evmVersion: hre.config.solidity.compilers[0].settings.evmVersion,
    hardhat: require("hardhat/package.json").version,
    specBytes: SPEC.length,
    generatedAt: new Date().toISOString(),
  };
  fs.mkdirSync(OUT_DIR, { recursive: true });
  fs.writeFileSync(path.join(OUT_DIR, "gas.json"), JSON.stringify({ meta, results: rows }, null, 2) + "\n");
  const md = [
    "# cod — JobManager gas",
    "",
    `Measured by \`contracts/scripts/gas-report.js\` on Hardhat ${meta.hardhat}'s in-process network; ` +
      `solc ${meta.solc}, optimizer ${meta.optimizer.enabled ? `on (${meta.optimizer.runs} runs)` : "off"}, ` +
      `EVM ${meta.evmVersion}. Gas used by the whole transaction (21,000 base included).`,
    "",
    "| operation | gas | note |",
    "| --- | ---: | --- |",
    ...rows.map((r) => `| ${r.operation} | ${r.gas.toLocaleString("en-US")} | ${r.note} |`),
    "",
  ].join("\n");
  fs.writeFileSync(path.join(OUT_DIR, "gas.md"), md);
  console.log(md);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
