// Shared fixtures and constants for the cod contract tests.
const { ethers } = require("hardhat");

const MIN_FEE = ethers.parseEther("0.001");
const JOB_WINDOW = 3600n;
const MAX_CALLBACK_GAS = 2_000_000n;
const DEFAULT_CALLBACK_GAS = 500_000n;
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

async function deployManager() {
  const [owner, oracle, requester, stranger, oracle2] = await ethers.getSigners();
  const JobManager = await ethers.getContractFactory("JobManager");
  const manager = await JobManager.deploy(MIN_FEE, JOB_WINDOW, MAX_CALLBACK_GAS);
  await manager.setOracle(oracle.address, true);
  return { manager, owner, oracle, requester, stranger, oracle2 };
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
  CID_IN,
  CID_1,
  CID_2,
  specPrefix,
  SPEC_SUFFIX,
  typicalSpec,
  deployManager,
  nextId,
};
