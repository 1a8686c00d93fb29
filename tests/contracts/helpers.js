// Shared fixtures and constants for the cod contract tests (JobManager v2: staked operators).
const { ethers } = require("hardhat");

const MIN_FEE = ethers.parseEther("0.001");
const JOB_WINDOW = 3600n;
const MAX_CALLBACK_GAS = 2_000_000n;
const DEFAULT_CALLBACK_GAS = 500_000n;
const MIN_STAKE = ethers.parseEther("1");
const UNBONDING_DELAY = 2n * 86400n;
// docs/contracts.md's rule: minFee >= FULFIL_OVERHEAD_GAS * callbackGasPrice, where the overhead is
// the worst-case gas of a fulfil transaction beyond its callback (measured in JobManager.test.js).
const FULFIL_OVERHEAD_GAS = 200_000n;
// Plausible CIDv1 strings (base32, 59 chars) as Kubo prints them.
const CID_IN = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
const CID_1 = "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va";
const CID_2 = "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

// Reason codes (IJobManager.Reason)
const R = {
  None: 0n, TermsMismatch: 1n, WrongStatus: 2n, NotClaimer: 3n, DeadlinePassed: 4n, InvalidResult: 5n,
  InsufficientGas: 6n, WrongReplicas: 7n, BadReveal: 8n, RevealNotOpen: 9n, ReasonTooLong: 10n,
};
// JobStatus
const S = { None: 0n, Requested: 1n, Claimed: 2n, Revealing: 3n, Completed: 4n, Failed: 5n, Cancelled: 6n };
// ReplicaState
const RS = { Empty: 0n, Claimed: 1n, Committed: 2n, Revealed: 3n };

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
// deploy with a non-zero callbackGasPrice. `oracle` (and with `bothOracles`, `oracle2`) are
// registered operators with MIN_STAKE; `op3` is registered too when `bothOracles` is "three".
async function deployManager(callbackGasPrice = 0n, bothOracles = false) {
  const [owner, oracle, requester, stranger, oracle2, op3] = await ethers.getSigners();
  const JobManager = await ethers.getContractFactory("JobManager");
  const manager = await JobManager.deploy(MIN_FEE, JOB_WINDOW, MAX_CALLBACK_GAS, callbackGasPrice, MIN_STAKE,
    UNBONDING_DELAY);
  await manager.connect(oracle).registerOperator({ value: MIN_STAKE });
  if (bothOracles) await manager.connect(oracle2).registerOperator({ value: MIN_STAKE });
  if (bothOracles === "three") await manager.connect(op3).registerOperator({ value: MIN_STAKE });
  return { manager, owner, oracle, requester, stranger, oracle2, op3 };
}

/** `oracle` and `oracle2` registered as operators. */
const deployWithTwoOracles = () => deployManager(0n, true);
/** `oracle`, `oracle2` and `op3` registered as operators. */
const deployWithThreeOperators = () => deployManager(0n, "three");

/** Plain array of a Terms struct (ethers Results are read-only proxies). */
const plain = (terms) => [...terms];

/** The Terms of `jobId`, from its JobRequested event. */
async function termsOf(manager, jobId) {
  const logs = await manager.queryFilter(manager.filters.JobRequested(jobId));
  if (logs.length === 0) throw new Error(`no JobRequested for job ${jobId}`);
  return plain(logs[logs.length - 1].args.terms);
}

/** requestHash as the JobManager computes it. */
function requestHash(jobId, spec) {
  return ethers.keccak256(
    ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "bytes32"], [jobId, ethers.keccak256(ethers.toUtf8Bytes(spec))]),
  );
}

const TERMS_TYPE = "tuple(address,address,uint96,uint64,uint32,uint8,uint32,bool,bytes32)";
/** The terms digest bytes20(keccak256(abi.encode(terms))). */
function hashTerms(terms) {
  return ethers.dataSlice(ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode([TERMS_TYPE], [terms])), 0, 20);
}
/** The result digest bytes20(keccak256(abi.encode(cid, exitCode, result))). */
function resultHash(cid, exitCode, result = "0x") {
  return ethers.dataSlice(
    ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["string", "uint8", "bytes"], [cid, exitCode, result])), 0, 20);
}
/** A replica's commitment. */
function commitment(jobId, operator, cid, exitCode, result, salt) {
  return ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(
    ["uint256", "address", "string", "uint8", "bytes", "bytes32"], [jobId, operator, cid, exitCode, result, salt]));
}

/** Claims `jobId` as `op` unless `op` already holds it (single replica). */
async function claim(manager, op, jobId) {
  const job = await manager.getJob(jobId);
  const terms = await termsOf(manager, jobId);
  if (job.claimer !== op.address) await (await manager.connect(op).claimJob(jobId, terms)).wait();
  return terms;
}

/** Claims (if needed) then returns the fulfil transaction promise. */
async function fulfil(manager, op, jobId, cid = CID_1, exitCode = 0, result = "0x", overrides = {}) {
  const terms = await claim(manager, op, jobId);
  return manager.connect(op).fulfillJob(jobId, terms, cid, exitCode, result, overrides);
}

/** Claims (if needed) then returns the failJob transaction promise. */
async function fail(manager, op, jobId, reason = "cannot run", overrides = {}) {
  const terms = await claim(manager, op, jobId);
  return manager.connect(op).failJob(jobId, terms, reason, overrides);
}

/** The cancelJob transaction promise (by `who`). */
async function cancel(manager, who, jobId) {
  return manager.connect(who).cancelJob(jobId, await termsOf(manager, jobId));
}

/** The id the next requestJob will get. */
async function nextId(manager) {
  return manager.nextJobId();
}

module.exports = {
  MIN_FEE, JOB_WINDOW, MAX_CALLBACK_GAS, DEFAULT_CALLBACK_GAS, FULFIL_OVERHEAD_GAS, MIN_STAKE, UNBONDING_DELAY,
  CID_IN, CID_1, CID_2, R, S, RS,
  specPrefix, SPEC_SUFFIX, typicalSpec,
  deployManager, deployWithTwoOracles, deployWithThreeOperators,
  plain, termsOf, requestHash, hashTerms, resultHash, commitment,
  claim, fulfil, fail, cancel, nextId,
};

/** A withArgs predicate for a JobRequested `terms` argument. */
function termsLike(jobId, requester, consumer, spec, fee, callbackGasLimit, replicas = 1n) {
  return (t) =>
    t[0] === requester && t[1] === consumer && t[2] === BigInt(fee) && t[3] > 0n &&
    t[4] === BigInt(callbackGasLimit) && t[5] === BigInt(replicas) && t[8] === requestHash(jobId, spec);
}
module.exports.termsLike = termsLike;

/** The Terms of each of `jobIds` (for FanOutConsumer.cancelStalled). */
async function termsList(manager, jobIds) {
  return Promise.all(jobIds.map((id) => termsOf(manager, id)));
}
module.exports.termsList = termsList;
