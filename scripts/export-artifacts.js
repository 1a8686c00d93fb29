#!/usr/bin/env node
// Copies the ABI and bytecode of the contracts the Python side uses from Hardhat's artifacts
// into bridge/artifacts/<Name>.json, so a Python user never needs Node.js at run time.
// Run after `npx hardhat compile` (or use `npm run build`, which does both).
"use strict";

const fs = require("fs");
const path = require("path");

// `paths.artifacts` of hardhat.config.js; contracts/X.sol's artifacts are in contracts/X.sol/ under it.
const ARTIFACTS = path.join(__dirname, "..", ".hardhat", "artifacts", "contracts");
const OUT_DIR = path.join(__dirname, "..", "bridge", "artifacts");

// [source path under contracts/, contract name, whether bytecode is shipped]
const EXPORTS = [
  ["JobManager.sol", "JobManager", true],
  ["IJobConsumer.sol", "IJobConsumer", false],
  ["examples/TwoStagePipeline.sol", "TwoStagePipeline", true],
  ["examples/FanOutConsumer.sol", "FanOutConsumer", true],
  ["examples/WordCount.sol", "WordCount", true],
];

// `hardhat coverage` compiles instrumented contracts into the same artifacts folder (with the
// optimizer off); never ship those. Our real build always has the optimizer on.
function assertNotInstrumented(artifactFile) {
  const dbg = JSON.parse(fs.readFileSync(artifactFile.replace(/\.json$/, ".dbg.json"), "utf8"));
  const buildInfo = JSON.parse(fs.readFileSync(path.resolve(path.dirname(artifactFile), dbg.buildInfo), "utf8"));
  if (!buildInfo.input.settings.optimizer.enabled) {
    throw new Error(
      `${artifactFile} comes from an instrumented (coverage) build: run \`npx hardhat clean && npx hardhat compile\``,
    );
  }
}

function main() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const [source, name, withBytecode] of EXPORTS) {
    const file = path.join(ARTIFACTS, source, `${name}.json`);
    if (!fs.existsSync(file)) {
      throw new Error(`missing ${file}: run \`npx hardhat compile\` first`);
    }
    const artifact = JSON.parse(fs.readFileSync(file, "utf8"));
    assertNotInstrumented(file);
    const out = { contractName: name, abi: artifact.abi };
    if (withBytecode) out.bytecode = artifact.bytecode;
    const target = path.join(OUT_DIR, `${name}.json`);
    fs.writeFileSync(target, JSON.stringify(out, null, 2) + "\n");
    console.log(`wrote ${path.relative(process.cwd(), target)}`);
  }
}

main();
