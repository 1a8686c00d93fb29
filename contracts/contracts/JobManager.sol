// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobConsumer} from "./IJobConsumer.sol";
import {IJobManager} from "./IJobManager.sol";

/// @title JobManager
/// @notice Escrows fees for off-chain compute jobs, records their results as CIDs, and calls the
/// requester's consumer contract back with a bounded, exact amount of gas.
/// @dev Fees are pull payments: settling a job only credits `withdrawable`; ETH leaves through
/// `withdraw`/`withdrawTo`. Invariant (barring ETH forced in by selfdestruct, which only adds):
/// `address(this).balance == totalEscrowed + sum(withdrawable)`, where `totalEscrowed` is the sum
/// of the fees of jobs in the `Requested` state.
///
/// Fee rules: on `fulfillJob` the oracle earns the whole fee; on `cancelJob` (requester, after
/// the deadline) the requester gets it all back; on `failJob` the oracle earns
/// `min(failureFee, fee)` — compensation for the gas spent rejecting a bad request — and the
/// requester gets the rest back. `failureFee` is owner-set, 0 by default, never above `minFee`.
///
/// Callbacks: a consumer with no code gets no call; `CallbackFailed` is emitted with the encoded
/// `JobManagerConsumerNotContract(consumer)` error as reason. `requestJob` is deliberately not
/// `nonReentrant`: consumers chain jobs by requesting from inside their callback.
contract JobManager is IJobManager, Ownable2Step, Pausable, ReentrancyGuardTransient {
    /// @notice Largest accepted spec, in bytes.
    uint256 public constant MAX_SPEC_BYTES = 8192;
    /// @notice Largest accepted result CID, in bytes.
    uint256 public constant MAX_RESULT_CID_BYTES = 128;
    /// @notice Largest accepted failure reason, in bytes.
    uint256 public constant MAX_REASON_BYTES = 1024;
    /// @notice At most this many bytes of a failed callback's revert data are kept in `CallbackFailed`.
    uint256 public constant MAX_CALLBACK_REASON_BYTES = 256;
    /// @notice Gas kept back, beyond the 63/64 rule, for the CALL itself and the work after it.
    uint256 public constant CALLBACK_GAS_RESERVE = 10_000;
    /// @notice Bounds of `jobWindow`.
    uint64 public constant MIN_JOB_WINDOW = 60;
    uint64 public constant MAX_JOB_WINDOW = 30 days;
    /// @notice Upper bound of `maxCallbackGasLimit`.
    uint32 public constant CALLBACK_GAS_LIMIT_CAP = 5_000_000;

    /// @notice Minimum fee (wei) for a request.
    uint96 public minFee;
    /// @notice Part of the fee an oracle keeps when it fails a job (see contract NatSpec).
    uint96 public failureFee;
    /// @notice Seconds between a request and its deadline.
    uint64 public jobWindow;
    /// @notice Largest callback gas limit a request may ask for.
    uint32 public maxCallbackGasLimit;
    /// @notice Id the next request will get; ids start at 1 (0 never exists).
    uint256 public nextJobId = 1;
    /// @notice Sum of the fees of jobs in the `Requested` state.
    uint256 public totalEscrowed;
    /// @notice Wei each account can withdraw.
    mapping(address account => uint256) public withdrawable;

    mapping(uint256 jobId => Job) private _jobs;
    mapping(address account => bool) private _oracles;

    /// @param minFee_ Minimum fee (wei).
    /// @param jobWindow_ Seconds from request to deadline, in [MIN_JOB_WINDOW, MAX_JOB_WINDOW].
    /// @param maxCallbackGasLimit_ Largest callback gas limit, at most CALLBACK_GAS_LIMIT_CAP.
    constructor(uint96 minFee_, uint64 jobWindow_, uint32 maxCallbackGasLimit_) Ownable(msg.sender) {
        setMinFee(minFee_);
        setJobWindow(jobWindow_);
        setMaxCallbackGasLimit(maxCallbackGasLimit_);
    }

    modifier onlyOracle() {
        _checkOracle();
        _;
    }

    // ------------------------------------------------------------------------------------ views

    /// @inheritdoc IJobManager
    function getJob(uint256 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    /// @notice Whether `account` may fulfil and fail jobs.
    function isOracle(address account) external view returns (bool) {
        return _oracles[account];
    }

    // --------------------------------------------------------------------------------- requests

    /// @inheritdoc IJobManager
    /// @dev Reverts when paused, when the fee is below `minFee`, when `spec` is empty or longer
    /// than `MAX_SPEC_BYTES`, or when `callbackGasLimit` exceeds `maxCallbackGasLimit`. With a zero
    /// `consumer` the callback gas limit is ignored. Not `nonReentrant` (chaining).
    function requestJob(string calldata spec, address consumer, uint32 callbackGasLimit)
        external
        payable
        whenNotPaused
        returns (uint256 jobId)
    {
        if (msg.value < minFee) revert JobManagerFeeTooLow(msg.value, minFee);
        if (msg.value > type(uint96).max) revert JobManagerFeeTooHigh(msg.value);
        uint256 specLength = bytes(spec).length;
        if (specLength == 0 || specLength > MAX_SPEC_BYTES) {
            revert JobManagerInvalidSpecLength(specLength, MAX_SPEC_BYTES);
        }
        if (callbackGasLimit > maxCallbackGasLimit) {
            revert JobManagerCallbackGasLimitTooHigh(callbackGasLimit, maxCallbackGasLimit);
        }

        jobId = nextJobId++;
        uint64 deadline = uint64(block.timestamp) + jobWindow;
        Job storage job = _jobs[jobId];
        job.requester = msg.sender;
        job.consumer = consumer;
        job.fee = uint96(msg.value);
        job.deadline = deadline;
        job.callbackGasLimit = callbackGasLimit;
        job.status = JobStatus.Requested;
        totalEscrowed += msg.value;
        emit JobRequested(jobId, msg.sender, consumer, spec, msg.value, deadline);
    }

    /// @inheritdoc IJobManager
    /// @dev Only the requester, only for a `Requested` job, only after its deadline. No callback.
    function cancelJob(uint256 jobId) external {
        Job storage job = _requestedJob(jobId);
        if (job.requester != msg.sender) revert JobManagerUnauthorizedRequester(jobId, msg.sender);
        if (block.timestamp <= job.deadline) revert JobManagerDeadlineNotReached(jobId, job.deadline);

        job.status = JobStatus.Cancelled;
        uint96 fee = job.fee;
        totalEscrowed -= fee;
        withdrawable[msg.sender] += fee;
        emit JobCancelled(jobId);
    }

    // ---------------------------------------------------------------------------------- oracles

    /// @notice Records the result of `jobId`, pays the calling oracle its fee, then calls the
    /// consumer's `onJobResult` with exactly the job's callback gas limit.
    /// @dev Only oracles; the job must be `Requested` and not past its deadline; `resultCid` must
    /// be 1..MAX_RESULT_CID_BYTES bytes. Reverts with `InsufficientGasForCallback` when the
    /// transaction's gas cannot give the consumer its full limit; a consumer that reverts or runs
    /// out of gas only yields `CallbackFailed`.
    /// @param jobId The job's id.
    /// @param resultCid The CID of the job's result directory.
    /// @param exitCode The job's exit code.
    function fulfillJob(uint256 jobId, string calldata resultCid, uint8 exitCode) external onlyOracle {
        Job storage job = _requestedJob(jobId);
        if (block.timestamp > job.deadline) revert JobManagerDeadlinePassed(jobId, job.deadline);
        uint256 cidLength = bytes(resultCid).length;
        if (cidLength == 0 || cidLength > MAX_RESULT_CID_BYTES) {
            revert JobManagerInvalidResultCidLength(cidLength, MAX_RESULT_CID_BYTES);
        }

        job.status = JobStatus.Completed;
        job.exitCode = exitCode;
        job.resultCid = resultCid;
        uint96 fee = job.fee;
        totalEscrowed -= fee;
        withdrawable[msg.sender] += fee;
        emit JobCompleted(jobId, resultCid, exitCode);

        address consumer = job.consumer;
        if (consumer != address(0)) {
            _callConsumer(
                jobId,
                consumer,
                job.callbackGasLimit,
                abi.encodeCall(IJobConsumer.onJobResult, (jobId, resultCid, exitCode))
            );
        }
    }

    /// @notice Marks `jobId` as failed (it could not be run), splits its fee per the fee rules,
    /// then calls the consumer's `onJobFailed` with exactly the job's callback gas limit.
    /// @dev Only oracles; the job must be `Requested` (allowed after its deadline too); `reason`
    /// at most MAX_REASON_BYTES bytes. Callback handling as in `fulfillJob`.
    /// @param jobId The job's id.
    /// @param reason Why the job could not be run.
    function failJob(uint256 jobId, string calldata reason) external onlyOracle {
        Job storage job = _requestedJob(jobId);
        if (bytes(reason).length > MAX_REASON_BYTES) {
            revert JobManagerReasonTooLong(bytes(reason).length, MAX_REASON_BYTES);
        }

        job.status = JobStatus.Failed;
        uint96 fee = job.fee;
        uint96 oracleShare = failureFee < fee ? failureFee : fee;
        totalEscrowed -= fee;
        if (oracleShare != 0) withdrawable[msg.sender] += oracleShare;
        if (fee != oracleShare) withdrawable[job.requester] += fee - oracleShare;
        emit JobFailed(jobId, reason);

        address consumer = job.consumer;
        if (consumer != address(0)) {
            _callConsumer(
                jobId, consumer, job.callbackGasLimit, abi.encodeCall(IJobConsumer.onJobFailed, (jobId, reason))
            );
        }
    }

    // ------------------------------------------------------------------------------ withdrawals

    /// @inheritdoc IJobManager
    function withdraw() external nonReentrant {
        _withdraw(payable(msg.sender));
    }

    /// @inheritdoc IJobManager
    function withdrawTo(address payable to) external nonReentrant {
        if (to == address(0)) revert JobManagerZeroAddress();
        _withdraw(to);
    }

    // ------------------------------------------------------------------------------------ admin

    /// @notice Allows or disallows `oracle` to fulfil and fail jobs.
    function setOracle(address oracle, bool allowed) external onlyOwner {
        if (oracle == address(0)) revert JobManagerZeroAddress();
        _oracles[oracle] = allowed;
        emit OracleSet(oracle, allowed);
    }

    /// @notice Sets the minimum fee; it may not drop below `failureFee`.
    function setMinFee(uint96 newMinFee) public onlyOwner {
        if (newMinFee < failureFee) revert JobManagerFailureFeeAboveMinFee(failureFee, newMinFee);
        minFee = newMinFee;
        emit MinFeeSet(newMinFee);
    }

    /// @notice Sets the part of the fee an oracle keeps when failing a job; at most `minFee`.
    function setFailureFee(uint96 newFailureFee) external onlyOwner {
        if (newFailureFee > minFee) revert JobManagerFailureFeeAboveMinFee(newFailureFee, minFee);
        failureFee = newFailureFee;
        emit FailureFeeSet(newFailureFee);
    }

    /// @notice Sets the job window (seconds from request to deadline) for future requests.
    function setJobWindow(uint64 newJobWindow) public onlyOwner {
        if (newJobWindow < MIN_JOB_WINDOW || newJobWindow > MAX_JOB_WINDOW) {
            revert JobManagerInvalidJobWindow(newJobWindow);
        }
        jobWindow = newJobWindow;
        emit JobWindowSet(newJobWindow);
    }

    /// @notice Sets the largest callback gas limit future requests may ask for.
    function setMaxCallbackGasLimit(uint32 newMaxCallbackGasLimit) public onlyOwner {
        if (newMaxCallbackGasLimit > CALLBACK_GAS_LIMIT_CAP) {
            revert JobManagerInvalidMaxCallbackGasLimit(newMaxCallbackGasLimit);
        }
        maxCallbackGasLimit = newMaxCallbackGasLimit;
        emit MaxCallbackGasLimitSet(newMaxCallbackGasLimit);
    }

    /// @notice Stops new requests. Fulfilment, failure, cancellation and withdrawal keep working.
    function pause() external onlyOwner {
        _pause();
    }

    /// @notice Accepts new requests again.
    function unpause() external onlyOwner {
        _unpause();
    }

    // -------------------------------------------------------------------------------- internals

    function _checkOracle() internal view {
        if (!_oracles[msg.sender]) revert JobManagerUnauthorizedOracle(msg.sender);
    }

    function _requestedJob(uint256 jobId) private view returns (Job storage job) {
        job = _jobs[jobId];
        if (job.status != JobStatus.Requested) revert JobManagerJobNotRequested(jobId, job.status);
    }

    function _withdraw(address payable to) private {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert JobManagerNothingToWithdraw(msg.sender);
        withdrawable[msg.sender] = 0;
        emit Withdrawn(msg.sender, to, amount);
        (bool sent,) = to.call{value: amount}("");
        if (!sent) revert JobManagerWithdrawFailed(to, amount);
    }

    /// @dev Calls `consumer` with exactly `gasLimit` gas (Chainlink's `_callWithExactGas`): the
    /// 63/64 rule must still leave `gasLimit` after `CALLBACK_GAS_RESERVE`, else the whole
    /// transaction reverts, so an oracle cannot starve a callback into failing. Return data is
    /// not copied on success and copied up to `MAX_CALLBACK_REASON_BYTES` on failure.
    function _callConsumer(uint256 jobId, address consumer, uint256 gasLimit, bytes memory payload) private {
        if (consumer.code.length == 0) {
            emit CallbackFailed(jobId, abi.encodeWithSelector(JobManagerConsumerNotContract.selector, consumer));
            return;
        }
        bool enoughGas;
        bool success;
        assembly ("memory-safe") {
            let g := gas()
            if gt(g, CALLBACK_GAS_RESERVE) {
                g := sub(g, CALLBACK_GAS_RESERVE)
                if gt(sub(g, div(g, 64)), gasLimit) {
                    enoughGas := 1
                    success := call(gasLimit, consumer, 0, add(payload, 0x20), mload(payload), 0, 0)
                }
            }
        }
        if (!enoughGas) revert InsufficientGasForCallback(jobId, gasLimit);
        if (success) return;

        bytes memory reason;
        assembly ("memory-safe") {
            let size := returndatasize()
            if gt(size, MAX_CALLBACK_REASON_BYTES) { size := MAX_CALLBACK_REASON_BYTES }
            reason := mload(0x40)
            mstore(reason, size)
            returndatacopy(add(reason, 0x20), 0, size)
            mstore(0x40, add(add(reason, 0x20), and(add(size, 31), not(31))))
        }
        emit CallbackFailed(jobId, reason);
    }
}
