// Shared fixtures and constants for the cod contract tests.
const { ethers } = require("hardhat");
const { time } = require("@nomicfoundation/hardhat-network-helpers");

const MIN_FEE = ethers.parseEther("0.001");
const JOB_WINDOW = 3600n;
const MAX_CALLBACK_GAS = 2_000_000n;
const DEFAULT_CALLBACK_GAS = 500_000n;
// docs/contracts.md's rule: minFee >= FULFIL_OVERHEAD_GAS * callbackGasPrice, where the overhead is
// the worst-case gas of a fulfil transaction beyond its callback (measured in JobManager.test.js).
const FULFIL_OVERHEAD_GAS = 200_000n;
// Plausible CIDv1 strings (base32, 59 chars) as Kubo prints them.
const CID_IN = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
const CID_1 = "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va";
const CID_2 = "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

/** A ~400-byte docker spec with `cid` spliced in, as the off-chain templates render it. */
function specPrefix(stage) {
  return (
    '{"engine":"docker","image":"cod/stage' + stage + ':latest","entrypoint":["python3","/app/run.py"],' +
    '"env":{"STAGE":"' + stage + '"},"inputs":[{"source":"ipfs://'
  );
}
const SPEC_SUFFIX =
  '","target":"/inputs/data"}],"outputs":[{"name":"outputs","path":"/outputs"}],' +
  '"resources":{"cpu":"1","memory":"512Mi","disk":"1Gi","gpu":0},"network":"none","timeout":600}';
const typicalSpec = (cid = CID_IN) => specPrefix(1) + cid + SPEC_SUFFIX;

// Most tests price callback gas at 0 so that a request pays exactly MIN_FEE; the fee-rule tests
// deploy with a non-zero callbackGasPrice (deployPricedManager).
async function deployManager(callbackGasPrice = 0n, bothOracles = false) {
  const [owner, oracle, requester, stranger, oracle2] = await ethers.getSigners();
  const JobManager = await ethers.getContractFactory("JobManager");
  const oracles = bothOracles ? [oracle.address, oracle2.address] : [oracle.address];
  const manager = await JobManager.deploy(MIN_FEE, JOB_WINDOW, MAX_CALLBACK_GAS, callbackGasPrice, oracles);
  return { manager, owner, oracle, requester, stranger, oracle2 };
}

/** Both `oracle` and `oracle2` allowed from deployment (initial oracles need no delay). */
const deployWithTwoOracles = () => deployManager(0n, true);

/** Schedules `account` as an oracle, waits out ORACLE_DELAY and activates it. */
async function addOracle(manager, owner, account) {
  await manager.connect(owner).setOracle(account, true);
  await time.increase(await manager.ORACLE_DELAY());
  await manager.activateOracle(account);
}

/** The request hash the JobManager stored for `jobId` (zero for an unknown job). */
async function rh(manager, jobId) {
  return (await manager.getJob(jobId)).requestHash;
}

/** requestHash as the JobManager computes it; `callbackGasLimit` as stored (0 without consumer). */
function requestHash(jobId, requester, consumer, spec, fee, callbackGasLimit) {
  return ethers.keccak256(
    ethers.AbiCoder.defaultAbiCoder().encode(
      ["uint256", "address", "address", "bytes32", "uint256", "uint32"],
      [jobId, requester, consumer, ethers.keccak256(ethers.toUtf8Bytes(spec)), fee, callbackGasLimit],
    ),
  );
}

/** The id the next requestJob will get. */
async function nextId(manager) {
  return manager.nextJobId();
}

module.exports = {
  MIN_FEE,
  JOB_WINDOW,
  MAX_CALLBACK_GAS,
  DEFAULT_CALLBACK_GAS,
  FULFIL_OVERHEAD_GAS,
  CID_IN,
  CID_1,
  CID_2,
  specPrefix,
  SPEC_SUFFIX,
  typicalSpec,
  deployManager,
  deployWithTwoOracles,
  addOracle,
  nextId,
  rh,
  requestHash,
};
