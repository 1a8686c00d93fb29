// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IJobManager (v2: the network contract)
/// @notice The surface of cod's JobManager v2: independent staked operators claim jobs with a
/// lease, settle them alone (replicas = 1) or by commit-reveal agreement of k replicas, and the
/// requester's consumer is called back with an exact amount of gas. Admin functions live on
/// `JobManager` only.
/// @dev One storage word per job. Everything else a job needs (`Terms`) is emitted in full in
/// `JobRequested` and passed back as calldata by every later call, checked against the stored
/// digest `bytes20(keccak256(abi.encode(terms)))` (Chainlink Functions' commitment pattern).
/// After completion the digest is replaced by `resultHash(resultCid, exitCode, result)`.
interface IJobManager {
    /// @notice Lifecycle of a job. `None`: the id was never issued. `Requested`: open, nobody
    /// holds it (replicas = 1) / no replica slot claimed yet. `Claimed`: held by a claimer
    /// (replicas = 1) or in the claim/commit phase (replicas > 1). `Revealing`: replicas > 1, the
    /// reveal phase is open. `Completed`: a result was recorded (for replicas > 1 possibly still
    /// awaiting `finalize` for payouts). `Failed`, `Cancelled`: settled without result.
    enum JobStatus {
        None,
        Requested,
        Claimed,
        Revealing,
        Completed,
        Failed,
        Cancelled
    }

    /// @notice State of one replica slot (replicas > 1).
    enum ReplicaState {
        Empty,
        Claimed,
        Committed,
        Revealed
    }

    /// @notice Why an item of a batch was skipped (`SettlementSkipped`), or why a single call
    /// reverted with `JobManagerRejected`.
    enum Reason {
        None,
        TermsMismatch, // 1: the terms do not match the job (or the job does not exist)
        WrongStatus, // 2: the job is not in a state that allows this call
        NotClaimer, // 3: the caller does not hold the claim / a replica slot in that state
        DeadlinePassed, // 4: the job's deadline has passed
        InvalidResult, // 5: CID empty or > MAX_RESULT_CID_BYTES, or result > MAX_RESULT_BYTES
        InsufficientGas, // 6: not enough gas left to give the callback its exact limit
        WrongReplicas, // 7: the call is for the other kind of job (single vs replicated)
        BadReveal, // 8: the reveal does not open the caller's commitment
        RevealNotOpen, // 9: the reveal phase cannot open yet / has closed
        ReasonTooLong // 10: failure reason > MAX_REASON_BYTES
    }

    /// @notice A request's terms: emitted in `JobRequested`, quoted back by every later call.
    /// `fee` is the whole fee paid (replicas × the per-replica quote); `deadline` the last second
    /// a result may be delivered; `callbackGasLimit` 0 without consumer; `lease` the resolved lease
    /// (seconds); `restricted` true when only named claimers may claim (see `mayClaim`);
    /// `requestHash` = keccak256(abi.encode(jobId, keccak256(bytes(spec)))). Field order is ABI.
    struct Terms {
        address requester;
        address consumer;
        uint96 fee;
        uint64 deadline;
        uint32 callbackGasLimit;
        uint8 replicas;
        uint32 lease;
        bool restricted;
        bytes32 requestHash;
    }

    /// @notice Options of `requestJobWith`. `replicas` 1..MAX_REPLICAS (0 means 1); `lease` in
    /// [MIN_LEASE, jobWindow] or 0 for `defaultLease`; `claimers` empty = any staked operator,
    /// else only these accounts may claim.
    struct Options {
        uint8 replicas;
        uint32 lease;
        address[] claimers;
    }

    /// @notice A decoded view of the job word (see `getJob`). `leaseEnd`: the claim's lease end
    /// (replicas = 1) or the reveal phase's end (replicas > 1, once revealing). `claimer`: the
    /// current claimer (replicas = 1; zero otherwise). `digest`: terms digest while open, result
    /// digest once completed. `settlePending`: replicas > 1, completed but not yet finalized.
    struct JobView {
        JobStatus status;
        uint40 leaseEnd;
        address claimer;
        bytes20 digest;
        bool settlePending;
    }

    /// @notice An operator's record. `index` (from 1) is assigned at registration; `exitAt` is 0
    /// while active, else the time from which `withdrawStake` is allowed; `earned` is its fee
    /// balance (part of `withdrawable`).
    struct OperatorView {
        uint32 index;
        uint40 exitAt;
        uint96 stake;
        uint256 earned;
    }

    /// @notice A replica slot of a replicated job.
    struct ReplicaView {
        address operator;
        uint40 leaseEnd;
        ReplicaState state;
        bytes32 commitment;
        bytes20 answer;
    }

    /// @notice One item of `fulfillBatch`.
    struct Fulfilment {
        uint256 jobId;
        Terms terms;
        string resultCid;
        uint8 exitCode;
        bytes result;
    }

    /// @notice One item of `commitBatch`.
    struct Commitment {
        uint256 jobId;
        Terms terms;
        bytes32 commitment;
    }

    /// @notice One item of `revealBatch`.
    struct Reveal {
        uint256 jobId;
        Terms terms;
        string resultCid;
        uint8 exitCode;
        bytes result;
        bytes32 salt;
    }

    // ----------------------------------------------------------------------------------- errors

    /// @dev `msg.value` is below the fee the request needs (`quoteFee`).
    error JobManagerFeeTooLow(uint256 fee, uint256 requiredFee);
    /// @dev `msg.value` does not fit in a uint96.
    error JobManagerFeeTooHigh(uint256 fee);
    /// @dev The spec is empty or longer than `MAX_SPEC_BYTES`.
    error JobManagerInvalidSpecLength(uint256 length, uint256 maxLength);
    /// @dev The requested callback gas limit exceeds `maxCallbackGasLimit`.
    error JobManagerCallbackGasLimitTooHigh(uint32 callbackGasLimit, uint32 maxCallbackGasLimit);
    /// @dev `replicas` is outside 1..MAX_REPLICAS.
    error JobManagerInvalidReplicas(uint8 replicas);
    /// @dev The lease is outside [MIN_LEASE, jobWindow].
    error JobManagerInvalidLease(uint32 lease);
    /// @dev More claimers were named than `MAX_CLAIMERS`, or a zero address among them.
    error JobManagerInvalidClaimers();
    /// @dev Requests are paused.
    error JobManagerPaused();
    /// @dev A settlement call was rejected; `reason` is a `Reason` code (as in `SettlementSkipped`).
    error JobManagerRejected(uint256 jobId, Reason reason);
    /// @dev `account` is not the requester of `jobId`.
    error JobManagerUnauthorizedRequester(uint256 jobId, address account);
    /// @dev The job's deadline has not passed yet: it cannot be cancelled.
    error JobManagerDeadlineNotReached(uint256 jobId, uint64 deadline);
    /// @dev The reveal window of `jobId` has not ended (and not every committed replica revealed).
    error JobManagerRevealWindowOpen(uint256 jobId);
    /// @dev `account` is not a registered operator with at least `minStake`, or is exiting.
    error JobManagerNotEligible(address account);
    /// @dev `account` may not claim `jobId`: not among its claimers, lapsed on it before, already
    /// holds a replica slot of it, or every slot is held by a live lease.
    error JobManagerCannotClaim(uint256 jobId, address account);
    /// @dev `msg.value` is below `minStake` at registration.
    error JobManagerStakeTooLow(uint256 stake, uint256 minStake);
    /// @dev `account` is already registered and active.
    error JobManagerAlreadyRegistered(address account);
    /// @dev `account` is not a registered operator.
    error JobManagerNotOperator(address account);
    /// @dev `account` has not requested exit, or its unbonding delay has not elapsed (`exitAt`).
    error JobManagerNotUnbonded(address account, uint40 exitAt);
    /// @dev `account` already requested exit.
    error JobManagerExiting(address account);
    /// @dev Not enough gas left to give the consumer exactly its callback gas limit.
    error InsufficientGasForCallback(uint256 jobId, uint256 callbackGasLimit);
    /// @dev Used as the `CallbackFailed` reason when the consumer address has no code.
    error JobManagerConsumerNotContract(address consumer);
    /// @dev `account` has nothing to withdraw.
    error JobManagerNothingToWithdraw(address account);
    /// @dev Sending `amount` to `to` failed.
    error JobManagerWithdrawFailed(address to, uint256 amount);
    /// @dev The zero address was given where an account is required.
    error JobManagerZeroAddress();
    /// @dev A configuration value is out of its bounds (see the setter's NatSpec).
    error JobManagerInvalidConfig();
    /// @dev Renouncing ownership is disabled: it would freeze every parameter.
    error JobManagerRenounceDisabled();

    // ----------------------------------------------------------------------------------- events

    /// @notice A job was requested; `terms` must be quoted by every later call; `spec` is the job's
    /// JSON spec (not stored). `claimers` of a restricted request are in `ClaimersSet`.
    event JobRequested(
        uint256 indexed jobId, address indexed requester, address indexed consumer, Terms terms, string spec
    );
    /// @notice A restricted request named these claimers (only they may claim).
    event ClaimersSet(uint256 indexed jobId, address[] claimers);
    /// @notice `operator` claimed `jobId` (replicas = 1) or a replica slot of it (see `getReplica`)
    /// until `leaseEnd`.
    event JobClaimed(uint256 indexed jobId, address indexed operator, uint40 leaseEnd);
    /// @notice `operator`'s lease on `jobId` lapsed (its slot was reclaimed, or the job cancelled);
    /// it was slashed `penalty` (paid to the requester) and may not claim `jobId` again.
    event LeaseLapsed(uint256 indexed jobId, address indexed operator, uint256 penalty);
    /// @notice `operator` committed to a result of replicated job `jobId`.
    event ResultCommitted(uint256 indexed jobId, address indexed operator, bytes32 commitment);
    /// @notice The reveal phase of `jobId` opened; it closes after `revealEnd`.
    event RevealOpened(uint256 indexed jobId, uint40 revealEnd);
    /// @notice `operator` revealed its result of `jobId`; `answer` = `resultHash(...)`.
    event ResultRevealed(uint256 indexed jobId, address indexed operator, bytes20 answer);
    /// @notice `jobId` completed with this result: by its claimer (replicas = 1, `operator` the
    /// claimer) or by majority (replicas > 1, `operator` the reveal that made the majority).
    event JobCompleted(
        uint256 indexed jobId, string resultCid, uint8 exitCode, bytes result, address indexed operator
    );
    /// @notice `jobId` failed: by its claimer (`operator`), or by replica disagreement (`operator` 0).
    /// The requester got the whole fee back.
    event JobFailed(uint256 indexed jobId, string reason, address indexed operator);
    /// @notice A replicated job's payouts were settled: `agreeing` operators split the fee,
    /// `slashed` wei were taken from the others.
    event JobFinalized(uint256 indexed jobId, uint8 agreeing, uint256 slashed);
    /// @notice A job was cancelled by its requester after its deadline; the fee was refunded.
    event JobCancelled(uint256 indexed jobId);
    /// @notice `operator` lost `amount` of stake over `jobId` (`reason`: 1 lapse, 2 disagreement,
    /// 3 committed without revealing).
    event Slashed(address indexed operator, uint256 indexed jobId, uint256 amount, uint8 reason);
    /// @notice The consumer's callback for `jobId` reverted or ran out of gas; `reason` is its
    /// revert data, truncated to `MAX_CALLBACK_REASON_BYTES`.
    event CallbackFailed(uint256 indexed jobId, bytes reason);
    /// @notice An item of a batch was skipped (the others went on); `reason` is a `Reason` code.
    event SettlementSkipped(uint256 indexed jobId, Reason reason);
    /// @notice `account` withdrew `amount` to `to`.
    event Withdrawn(address indexed account, address to, uint256 amount);
    /// @notice `operator` registered with index `index` and stake `stake`.
    event OperatorRegistered(address indexed operator, uint32 index, uint256 stake);
    /// @notice `operator` added `amount`; its stake is now `stake`.
    event StakeAdded(address indexed operator, uint256 amount, uint256 stake);
    /// @notice `operator` requested exit: no new claims; `withdrawStake` from `exitAt`.
    event ExitRequested(address indexed operator, uint40 exitAt);
    /// @notice `operator` withdrew its whole stake `amount`.
    event StakeWithdrawn(address indexed operator, uint256 amount);
    /// @notice Requests were paused / unpaused by `account`.
    event Paused(address account);
    event Unpaused(address account);
    /// @notice Configuration changes.
    event MinFeeSet(uint64 minFee);
    event CallbackGasPriceSet(uint48 callbackGasPrice);
    event JobWindowSet(uint32 jobWindow);
    event DefaultLeaseSet(uint32 defaultLease);
    event MaxCallbackGasLimitSet(uint32 maxCallbackGasLimit);
    event PenaltiesSet(uint96 lapsePenalty, uint96 disagreePenalty);

    // ----------------------------------------------------------------------------------- requests

    /// @notice Requests a job with one replica, any staked operator, the default lease; `msg.value`
    /// is the fee (at least `quoteFee(consumer, callbackGasLimit, 1)`), escrowed until settled.
    /// @param spec The job spec (JSON), 1..MAX_SPEC_BYTES bytes; emitted, not stored.
    /// @param consumer The contract to call back, or the zero address for no callback.
    /// @param callbackGasLimit Exact gas for the callback, at most `maxCallbackGasLimit` (stored as
    /// 0 without consumer).
    /// @return jobId The new job's id (ids start at 1).
    function requestJob(string calldata spec, address consumer, uint32 callbackGasLimit)
        external
        payable
        returns (uint256 jobId);

    /// @notice As `requestJob`, with `opts` (replicas, lease, restricted claimers). The fee must be
    /// at least `quoteFee(consumer, callbackGasLimit, replicas)`.
    function requestJobWith(string calldata spec, address consumer, uint32 callbackGasLimit, Options calldata opts)
        external
        payable
        returns (uint256 jobId);

    /// @notice Cancels a job whose deadline has passed and that has no result (status `Requested`
    /// or `Claimed`): the whole fee is refunded to the requester; claimers still holding an
    /// uncommitted claim are slashed `lapsePenalty` (to the requester). Only the requester.
    function cancelJob(uint256 jobId, Terms calldata terms) external;

    // ----------------------------------------------------------------------------------- operators

    /// @notice Registers the caller as an operator with stake `msg.value` (≥ `minStake`). An
    /// operator that withdrew may register again (same index).
    function registerOperator() external payable;

    /// @notice Adds `msg.value` to the caller's stake (also while exiting: it stays slashable).
    function addStake() external payable;

    /// @notice Starts the caller's exit: no new claims from now; `withdrawStake` after
    /// `unbondingDelay` (longer than any claim it holds can stay open).
    function requestExit() external;

    /// @notice Sends the caller its whole remaining stake, once its unbonding delay has elapsed.
    function withdrawStake() external;

    /// @notice Claims `jobId` (replicas = 1) or a free or lapsed replica slot of it (replicas > 1):
    /// the caller must be a registered, non-exiting operator with at least `minStake`, allowed by
    /// the request's claimers if restricted, and not have lapsed on this job before. Lease end =
    /// min(now + terms.lease, deadline). A slot whose lease lapsed (now > leaseEnd, no result /
    /// no commitment) may be claimed by another operator: the lapsed one is slashed `lapsePenalty`
    /// to the requester. Reverts `JobManagerCannotClaim` while a live lease holds (every slot).
    function claimJob(uint256 jobId, Terms calldata terms) external;

    /// @notice Records the result of a single-replica job and credits its fee to the caller, then
    /// calls the consumer's `onJobResult` with exactly the callback gas limit. Only the current
    /// claimer, until the deadline (also after its lease lapsed, if nobody reclaimed it).
    /// Reverts `JobManagerRejected(jobId, reason)` on any `Reason`.
    /// @param resultCid 1..MAX_RESULT_CID_BYTES bytes.
    /// @param result The small result, at most MAX_RESULT_BYTES bytes (may be empty).
    function fulfillJob(uint256 jobId, Terms calldata terms, string calldata resultCid, uint8 exitCode, bytes calldata result)
        external;

    /// @notice Marks a single-replica job failed (it cannot be run): the whole fee goes back to the
    /// requester, the consumer's `onJobFailed` gets min(callbackGasLimit, FAIL_CALLBACK_GAS_LIMIT)
    /// gas. Only the current claimer; allowed after the deadline too.
    function failJob(uint256 jobId, Terms calldata terms, string calldata reason) external;

    /// @notice Settles many single-replica jobs; a bad item emits `SettlementSkipped` and is
    /// skipped, the others settle. The fees are credited in one write.
    function fulfillBatch(Fulfilment[] calldata items) external;

    /// @notice Commits the caller's result of a replicated job: `commitment` =
    /// `commitmentOf(jobId, msg.sender, resultCid, exitCode, result, salt)`. Only the holder of a
    /// claimed slot, within its lease. When all replicas have committed the reveal phase opens.
    function commitResult(uint256 jobId, Terms calldata terms, bytes32 commitment) external;

    /// @notice Commits many; bad items are skipped (`SettlementSkipped`).
    function commitBatch(Commitment[] calldata items) external;

    /// @notice Reveals the caller's committed result. Opens the reveal phase (REVEAL_WINDOW) if
    /// it is not open yet and may open: all replicas committed, or a strict majority committed and
    /// the lease of every claimed slot has ended (the commit phase is over). When a strict majority (> replicas/2) has revealed the
    /// same answer, the job completes with it (consumer called once); payouts wait for `finalize`.
    /// Accepted until the reveal phase ends (also after completion, so late honest reveals count).
    function revealResult(
        uint256 jobId,
        Terms calldata terms,
        string calldata resultCid,
        uint8 exitCode,
        bytes calldata result,
        bytes32 salt
    ) external;

    /// @notice Reveals many; bad items are skipped (`SettlementSkipped`).
    function revealBatch(Reveal[] calldata items) external;

    /// @notice Settles a replicated job after its reveal window (or once every committed replica
    /// revealed). Completed: the agreeing operators split the fee; each that revealed another
    /// answer is slashed `disagreePenalty`, each that committed and did not reveal too, each that
    /// claimed and did not commit `lapsePenalty`; the slashed stake is split equally between the
    /// requester and the agreeing operators. No majority: the job fails ("replicas disagree"),
    /// the requester gets the whole fee back plus the stake slashed from non-revealers. Anyone.
    function finalize(uint256 jobId, Terms calldata terms) external;

    // ----------------------------------------------------------------------------------- payments

    /// @notice Sends the caller its whole withdrawable balance (refunds, fees, slashing shares).
    function withdraw() external;

    /// @notice Sends the caller's whole withdrawable balance to `to` (not the zero address).
    function withdrawTo(address payable to) external;

    // ----------------------------------------------------------------------------------- views

    /// @notice The decoded job word of `jobId` (status `None` if it never existed).
    function getJob(uint256 jobId) external view returns (JobView memory);

    /// @notice The result digest of a completed job (`resultHash` of its result), else zero.
    function resultDigest(uint256 jobId) external view returns (bytes20);

    /// @notice Replica `slot` of replicated job `jobId`.
    function getReplica(uint256 jobId, uint8 slot) external view returns (ReplicaView memory);

    /// @notice The operator record of `account` (all zero if never registered).
    function getOperator(address account) external view returns (OperatorView memory);

    /// @notice The account registered with `index` (zero if none).
    function operatorAt(uint32 index) external view returns (address);

    /// @notice Whether `account` is named by the restricted request `jobId` (false if unrestricted).
    function mayClaim(uint256 jobId, address account) external view returns (bool);

    /// @notice Whether `account` lapsed on `jobId` (and so may not claim it again).
    function hasLapsed(uint256 jobId, address account) external view returns (bool);

    /// @notice How much `account` can withdraw (its balance plus, for an operator, its earnings).
    function withdrawable(address account) external view returns (uint256);

    /// @notice The current minimum fee per replica.
    function minFee() external view returns (uint64);

    /// @notice The current maximum callback gas limit.
    function maxCallbackGasLimit() external view returns (uint32);

    /// @notice The smallest fee a request accepts now:
    /// `replicas * (minFee + (consumer == 0 ? 0 : callbackGasLimit) * callbackGasPrice)`.
    function quoteFee(address consumer, uint32 callbackGasLimit, uint8 replicas) external view returns (uint256);

    /// @notice `bytes20(keccak256(abi.encode(terms)))`: the digest stored while a job is open.
    function hashTerms(Terms calldata terms) external pure returns (bytes20);

    /// @notice `bytes20(keccak256(abi.encode(resultCid, exitCode, result)))`: a result's digest.
    function resultHash(string calldata resultCid, uint8 exitCode, bytes calldata result)
        external
        pure
        returns (bytes20);

    /// @notice `keccak256(abi.encode(jobId, operator, resultCid, exitCode, result, salt))`: what a
    /// replica commits (binding the operator, so a copied commitment is useless).
    function commitmentOf(
        uint256 jobId,
        address operator,
        string calldata resultCid,
        uint8 exitCode,
        bytes calldata result,
        bytes32 salt
    ) external pure returns (bytes32);
}
