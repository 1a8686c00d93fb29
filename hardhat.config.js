// Hardhat 2 configuration for cod's contracts.
//
// No solc binary can be downloaded on our machines, so compilation uses the
// solcjs build shipped in the pinned npm `solc` package (see package.json):
// the GET_SOLC_BUILD subtask is overridden to point Hardhat at soljson.js.
require("@nomicfoundation/hardhat-toolbox");
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const solc = require("solc");
const SOLC_LONG_VERSION = solc.version(); // e.g. "0.8.28+commit.7893614a.Emscripten.clang"
const SOLC_VERSION = SOLC_LONG_VERSION.split("+")[0];

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) {
    throw new Error(
      `cod: only solc ${SOLC_VERSION} (npm solc package) is available offline, ` +
        `but ${args.solcVersion} was requested`,
    );
  }
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: SOLC_LONG_VERSION,
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
    },
  },
  // Hardhat runs from the repository root: Solidity in contracts/, its tests in tests/contracts/
  // (next to the Python tests), build output under .hardhat/ (out of the way of the Python packages).
  paths: {
    sources: "./contracts",
    tests: "./tests/contracts",
    cache: "./.hardhat/cache",
    artifacts: "./.hardhat/artifacts",
  },
  networks: {
    hardhat: { hardfork: "cancun" },
  },
  gasReporter: {
    enabled: process.env.REPORT_GAS === "1",
    offline: true,
  },
  mocha: { timeout: 120000 },
  // Typechain is not used (tests are plain JavaScript); keep `compile` lean.
  typechain: { dontOverrideCompile: true },
};
