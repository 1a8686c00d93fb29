// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "./IJobConsumer.sol";
import {IJobManager} from "./IJobManager.sol";
import {JobLib} from "./JobLib.sol";

/// @title JobManagerBase
/// @notice Constants, storage and shared internals of `JobManager` (split for readability).
/// @dev See `JobManager` for the protocol; `JobLib` for the packed job word.
abstract contract JobManagerBase is IJobManager {
    using JobLib for uint256;

    /// @notice Largest accepted spec, in bytes.
    uint256 public constant MAX_SPEC_BYTES = 8192;
    /// @notice Largest accepted result CID, in bytes.
    uint256 public constant MAX_RESULT_CID_BYTES = 128;
    /// @notice Largest accepted small result, in bytes.
    uint256 public constant MAX_RESULT_BYTES = 256;
    /// @notice Largest accepted failure reason, in bytes.
    uint256 public constant MAX_REASON_BYTES = 1024;
    /// @notice At most this many bytes of a failed callback's revert data are kept in `CallbackFailed`.
    uint256 public constant MAX_CALLBACK_REASON_BYTES = JobLib.MAX_CALLBACK_REASON_BYTES;
    /// @notice Gas kept back, beyond the 63/64 rule, for the CALL itself and the work after it.
    uint256 public constant CALLBACK_GAS_RESERVE = JobLib.CALLBACK_GAS_RESERVE;
    /// @notice Bounds of `jobWindow`.
    uint32 public constant MIN_JOB_WINDOW = 60;
    uint32 public constant MAX_JOB_WINDOW = 30 days;
    /// @notice Upper bound of `maxCallbackGasLimit`.
    uint32 public constant CALLBACK_GAS_LIMIT_CAP = 5_000_000;
    /// @notice Most gas a consumer's `onJobFailed` gets (less if the job's limit is lower).
    uint32 public constant FAIL_CALLBACK_GAS_LIMIT = 50_000;
    /// @notice Most replicas a request may ask for.
    uint8 public constant MAX_REPLICAS = 7;
    /// @notice Shortest lease a request may ask for, in seconds.
    uint32 public constant MIN_LEASE = 60;
    /// @notice Most claimers a restricted request may name.
    uint256 public constant MAX_CLAIMERS = 32;
    /// @notice Length of a replicated job's reveal phase, in seconds.
    uint40 public constant REVEAL_WINDOW = 10 minutes;
    /// @notice Gas a batch keeps for an item's own work besides its callback (see `fulfillBatch`).
    uint256 public constant BATCH_ITEM_GAS = 60_000;

    /// @notice Least stake an operator must hold to claim; fixed at deployment, so the bond an
    /// operator signed up for cannot change under it (and a claim needs no config read).
    uint256 public immutable minStake;
    /// @notice Seconds from `requestExit` to `withdrawStake`; at least `jobWindow + REVEAL_WINDOW`,
    /// so every claim an exiting operator holds is past settlement or cancellable by then.
    uint40 public immutable unbondingDelay;

    /// @dev The whole request-time configuration and the id counter in one slot.
    struct Config {
        uint64 minFee;
        uint48 callbackGasPrice;
        uint32 jobWindow;
        uint32 defaultLease;
        uint24 maxCallbackGasLimit;
        bool paused;
        uint48 nextJobId;
    }

    /// @dev One slot per operator: everything a claim and a settlement touch.
    struct Operator {
        uint32 index;
        uint40 exitAt;
        uint96 stake;
        uint88 earned;
    }

    /// @dev One slot per replica slot of a replicated job.
    struct Replica {
        uint32 operator;
        uint40 leaseEnd;
        ReplicaState state;
        bytes20 answer;
    }

    Config internal _config;
    /// @notice Stake taken from an operator whose lease lapsed (to the requester).
    uint96 public lapsePenalty;
    /// @notice Stake taken from a replica that revealed against the majority or did not reveal.
    uint96 public disagreePenalty;
    /// @notice Number of operators ever registered (the last index given).
    uint32 public operatorCount;

    mapping(uint256 jobId => uint256) internal _jobs;
    mapping(address account => Operator) internal _operators;
    mapping(uint32 index => address) internal _operatorAt;
    mapping(address account => uint256) internal _balances;
    mapping(uint256 jobId => mapping(address => bool)) internal _claimers;
    mapping(uint256 jobId => mapping(uint32 operatorIndex => bool)) internal _lapsed;
    mapping(uint256 jobId => mapping(uint256 slot => Replica)) internal _replicas;
    mapping(uint256 jobId => mapping(uint256 slot => bytes32)) internal _commitments;
    mapping(uint256 jobId => bytes20) internal _settleTerms;

    /// @param minStake_ Least stake to claim (non-zero, fits in uint96).
    /// @param unbondingDelay_ Seconds from `requestExit` to `withdrawStake`.
    constructor(uint256 minStake_, uint40 unbondingDelay_) {
        if (minStake_ == 0 || minStake_ > type(uint96).max) revert JobManagerInvalidConfig();
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
    }

    // ----------------------------------------------------------------------------- internals

    /// @dev Reverts unless `terms` are the job's. A completed job's word holds its result digest:
    /// any call on it is `WrongStatus` (settled), never `TermsMismatch` (not the request meant).
    function _requireTerms(uint256 jobId, uint256 w, Terms calldata terms) internal pure {
        Reason r = _checkTerms(w, terms);
        if (r != Reason.None) revert JobManagerRejected(jobId, r);
    }

    function _checkTerms(uint256 w, Terms calldata terms) internal pure returns (Reason) {
        if (w == 0) return Reason.TermsMismatch;
        if (w.status() == JobStatus.Completed) return Reason.WrongStatus;
        if (w.digest() != JobLib.hashTerms(terms)) return Reason.TermsMismatch;
        return Reason.None;
    }

    function _validResult(string calldata resultCid, bytes calldata result) internal pure returns (bool) {
        uint256 n = bytes(resultCid).length;
        return n != 0 && n <= MAX_RESULT_CID_BYTES && result.length <= MAX_RESULT_BYTES;
    }

    /// @dev Slashes the lapsed claimer `index` of `jobId` (`lapsePenalty`), bars it from the job,
    /// and returns the amount taken (the caller credits it to the requester).
    function _lapse(uint256 jobId, uint32 index) internal returns (uint256 amount) {
        amount = _slash(jobId, index, lapsePenalty, 1);
        _lapsed[jobId][index] = true;
        emit LeaseLapsed(jobId, _operatorAt[index], amount);
    }

    /// @dev Takes up to `penalty` from operator `index`'s stake; returns what was taken.
    function _slash(uint256 jobId, uint32 index, uint96 penalty, uint8 reason) internal returns (uint256) {
        address account = _operatorAt[index];
        Operator storage op = _operators[account];
        uint96 stake = op.stake;
        if (penalty > stake) penalty = stake;
        op.stake = stake - penalty;
        emit Slashed(account, jobId, penalty, reason);
        return penalty;
    }

    /// @dev Credits `amount` to an operator's `earned` (one write), spilling into its plain
    /// balance in the (theoretical) case it would not fit.
    function _credit(Operator storage op, address account, uint256 amount) internal {
        uint256 earned = op.earned + amount;
        if (earned > type(uint88).max) {
            _balances[account] += earned;
            earned = 0;
        }
        op.earned = uint88(earned);
    }

    function _callFailed(uint256 jobId, Terms calldata terms, string memory reason) internal {
        if (terms.consumer == address(0)) return;
        uint32 gasLimit = terms.callbackGasLimit;
        if (gasLimit > FAIL_CALLBACK_GAS_LIMIT) gasLimit = FAIL_CALLBACK_GAS_LIMIT;
        JobLib.callConsumer(jobId, terms.consumer, gasLimit, abi.encodeCall(IJobConsumer.onJobFailed, (jobId, reason)));
    }
}
