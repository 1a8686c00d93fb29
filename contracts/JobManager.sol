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
/// Fee rules: a request pays at least `quoteFee(consumer, callbackGasLimit)` =
/// `minFee + callbackGasLimit * callbackGasPrice` (no callback part without a consumer), so the
/// fee covers the oracle's worst-case gas at the floor price `callbackGasPrice`: `minFee` must cover
/// the fulfil transaction's own gas (everything but the callback) at that price, the callback is
/// priced per gas. On `fulfillJob` the oracle earns the whole fee; on `cancelJob` (requester, after
/// the deadline) the requester gets it all back; on `failJob` the oracle earns the job's
/// `failureFee` — compensation for the gas spent rejecting a bad request, fixed when the job was
/// requested — and the requester gets the rest back. `failureFee` is owner-set, 0 by default,
/// never above `minFee` (so never above a job's fee).
///
/// Settling: `fulfillJob` and `failJob` quote the job's `requestHash` (see `requestJob`), so a
/// transaction sent for one request can never settle another that a reorg gave the same id.
///
/// Oracle set: removing an oracle is immediate; adding one takes `ORACLE_DELAY` (scheduled by the
/// owner, then `activateOracle` by anyone), so requesters see who may settle their jobs before it
/// can. Ownership cannot be renounced.
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
    /// @notice Most gas a consumer's `onJobFailed` gets (less if the job's limit is lower): the
    /// oracle is paid only `failureFee` for a failure, so it must not carry a full callback.
    uint32 public constant FAIL_CALLBACK_GAS_LIMIT = 50_000;
    /// @notice Seconds between scheduling an oracle's addition and the earliest `activateOracle`.
    uint64 public constant ORACLE_DELAY = 2 days;

    /// @notice Minimum fee (wei) for a request.
    uint96 public minFee;
    /// @notice Part of the fee an oracle keeps when it fails a job (see contract NatSpec).
    uint96 public failureFee;
    /// @notice Seconds between a request and its deadline.
    uint64 public jobWindow;
    /// @notice Largest callback gas limit a request may ask for.
    uint32 public maxCallbackGasLimit;
    /// @notice Wei per gas of callback gas limit a request pays on top of `minFee` (see `quoteFee`).
    uint96 public callbackGasPrice;
    /// @notice Id the next request will get; ids start at 1 (0 never exists).
    uint256 public nextJobId = 1;
    /// @notice Sum of the fees of jobs in the `Requested` state.
    uint256 public totalEscrowed;
    /// @notice Wei each account can withdraw.
    mapping(address account => uint256) public withdrawable;

    mapping(uint256 jobId => Job) private _jobs;
    mapping(address account => bool) private _oracles;
    mapping(address oracle => uint64 effectiveAt) private _oracleEffectiveAt;

    /// @param minFee_ Minimum fee (wei): at least the fulfil transaction's own gas (all but the
    /// callback) times `callbackGasPrice_` (see docs/contracts.md for the measured figure).
    /// @param jobWindow_ Seconds from request to deadline, in [MIN_JOB_WINDOW, MAX_JOB_WINDOW].
    /// @param maxCallbackGasLimit_ Largest callback gas limit, at most CALLBACK_GAS_LIMIT_CAP.
    /// @param callbackGasPrice_ Wei per gas of callback gas limit charged on top of `minFee`.
    /// @param initialOracles Oracles allowed at once, without `ORACLE_DELAY` (nothing is escrowed yet).
    constructor(
        uint96 minFee_,
        uint64 jobWindow_,
        uint32 maxCallbackGasLimit_,
        uint96 callbackGasPrice_,
        address[] memory initialOracles
    ) Ownable(msg.sender) {
        setMinFee(minFee_);
        setJobWindow(jobWindow_);
        setMaxCallbackGasLimit(maxCallbackGasLimit_);
        setCallbackGasPrice(callbackGasPrice_);
        for (uint256 i = 0; i < initialOracles.length; ++i) {
            if (initialOracles[i] == address(0)) revert JobManagerZeroAddress();
            _allowOracle(initialOracles[i]);
        }
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

    /// @notice When the scheduled addition of `oracle` can be activated (0: none scheduled).
    function oracleEffectiveAt(address oracle) external view returns (uint64) {
        return _oracleEffectiveAt[oracle];
    }

    /// @inheritdoc IJobManager
    function quoteFee(address consumer, uint32 callbackGasLimit) public view returns (uint256) {
        return minFee + (consumer == address(0) ? 0 : uint256(callbackGasLimit) * callbackGasPrice);
    }

    // --------------------------------------------------------------------------------- requests

    /// @inheritdoc IJobManager
    /// @dev Reverts when paused, when `spec` is empty or longer than `MAX_SPEC_BYTES`, when
    /// `callbackGasLimit` exceeds `maxCallbackGasLimit`, or when the fee is below `quoteFee`. With a
    /// zero `consumer` the callback gas limit is stored as 0. The job's `requestHash` is
    /// `keccak256(abi.encode(jobId, msg.sender, consumer, keccak256(bytes(spec)), msg.value,
    /// callbackGasLimit))`, with the limit as stored. The current `failureFee` is fixed into the
    /// job. Not `nonReentrant` (chaining).
    function requestJob(string calldata spec, address consumer, uint32 callbackGasLimit)
        external
        payable
        whenNotPaused
        returns (uint256 jobId)
    {
        uint256 specLength = bytes(spec).length;
        if (specLength == 0 || specLength > MAX_SPEC_BYTES) {
            revert JobManagerInvalidSpecLength(specLength, MAX_SPEC_BYTES);
        }
        if (callbackGasLimit > maxCallbackGasLimit) {
            revert JobManagerCallbackGasLimitTooHigh(callbackGasLimit, maxCallbackGasLimit);
        }
        if (consumer == address(0)) callbackGasLimit = 0;
        uint256 requiredFee = quoteFee(consumer, callbackGasLimit);
        if (msg.value < requiredFee) revert JobManagerFeeTooLow(msg.value, requiredFee);
        if (msg.value > type(uint96).max) revert JobManagerFeeTooHigh(msg.value);

        jobId = nextJobId++;
        bytes32 requestHash =
            keccak256(abi.encode(jobId, msg.sender, consumer, keccak256(bytes(spec)), msg.value, callbackGasLimit));
        uint64 deadline = _storeJob(jobId, consumer, callbackGasLimit, requestHash);
        totalEscrowed += msg.value;
        emit JobRequested(jobId, msg.sender, consumer, spec, msg.value, deadline, callbackGasLimit, requestHash);
    }

    /// @inheritdoc IJobManager
    /// @dev Only the requester, only for a `Requested` job, only after its deadline. No callback.
    function cancelJob(uint256 jobId) external {
        Job storage job = _jobs[jobId];
        _checkRequested(jobId, job);
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
    /// @dev Only oracles; `requestHash` must be the job's (else `JobManagerRequestMismatch`, checked
    /// first); the job must be `Requested` and not past its deadline; `resultCid` must be
    /// 1..MAX_RESULT_CID_BYTES bytes. Reverts with `InsufficientGasForCallback` when the
    /// transaction's gas cannot give the consumer its full limit; a consumer that reverts or runs
    /// out of gas only yields `CallbackFailed`.
    /// @param jobId The job's id.
    /// @param requestHash The job's `requestHash`, from its `JobRequested` event.
    /// @param resultCid The CID of the job's result directory.
    /// @param exitCode The job's exit code.
    function fulfillJob(uint256 jobId, bytes32 requestHash, string calldata resultCid, uint8 exitCode)
        external
        onlyOracle
    {
        Job storage job = _settleableJob(jobId, requestHash);
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
        emit JobCompleted(jobId, resultCid, exitCode, msg.sender);

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

    /// @notice Marks `jobId` as failed (it could not be run), pays the calling oracle the job's
    /// `failureFee` and credits the rest to the requester, then calls the consumer's `onJobFailed`
    /// with exactly `min(callbackGasLimit, FAIL_CALLBACK_GAS_LIMIT)` gas.
    /// @dev Only oracles; `requestHash` as in `fulfillJob`; the job must be `Requested` (allowed
    /// after its deadline too); `reason` at most MAX_REASON_BYTES bytes. Callback handling as in
    /// `fulfillJob`, with the capped gas.
    /// @param jobId The job's id.
    /// @param requestHash The job's `requestHash`, from its `JobRequested` event.
    /// @param reason Why the job could not be run.
    function failJob(uint256 jobId, bytes32 requestHash, string calldata reason) external onlyOracle {
        Job storage job = _settleableJob(jobId, requestHash);
        if (bytes(reason).length > MAX_REASON_BYTES) {
            revert JobManagerReasonTooLong(bytes(reason).length, MAX_REASON_BYTES);
        }

        job.status = JobStatus.Failed;
        uint96 fee = job.fee;
        // fixed at request, when failureFee <= minFee <= fee held: never above the job's fee
        uint96 oracleShare = job.failureFee;
        totalEscrowed -= fee;
        if (oracleShare != 0) withdrawable[msg.sender] += oracleShare;
        if (fee != oracleShare) withdrawable[job.requester] += fee - oracleShare;
        emit JobFailed(jobId, reason, msg.sender);

        address consumer = job.consumer;
        if (consumer != address(0)) {
            uint32 gasLimit = job.callbackGasLimit;
            if (gasLimit > FAIL_CALLBACK_GAS_LIMIT) gasLimit = FAIL_CALLBACK_GAS_LIMIT;
            _callConsumer(jobId, consumer, gasLimit, abi.encodeCall(IJobConsumer.onJobFailed, (jobId, reason)));
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

    /// @notice Disallows `oracle` at once (`allowed` false, also cancelling a scheduled addition),
    /// or schedules allowing it (`allowed` true): `activateOracle` makes it effective after
    /// `ORACLE_DELAY`. Scheduling again restarts the delay.
    function setOracle(address oracle, bool allowed) external onlyOwner {
        if (oracle == address(0)) revert JobManagerZeroAddress();
        if (allowed) {
            uint64 effectiveAt = uint64(block.timestamp) + ORACLE_DELAY;
            _oracleEffectiveAt[oracle] = effectiveAt;
            emit OracleChangeScheduled(oracle, effectiveAt);
        } else {
            _oracles[oracle] = false;
            delete _oracleEffectiveAt[oracle];
            emit OracleSet(oracle, false);
        }
    }

    /// @notice Makes the scheduled addition of `oracle` effective. Anyone may call, from its
    /// `effectiveAt` on; reverts `JobManagerOracleChangeNotReady` before, or if none is scheduled.
    function activateOracle(address oracle) external {
        uint64 effectiveAt = _oracleEffectiveAt[oracle];
        if (effectiveAt == 0 || block.timestamp < effectiveAt) {
            revert JobManagerOracleChangeNotReady(oracle, effectiveAt);
        }
        delete _oracleEffectiveAt[oracle];
        _allowOracle(oracle);
    }

    /// @notice Sets the minimum fee; it may not drop below `failureFee`.
    function setMinFee(uint96 newMinFee) public onlyOwner {
        if (newMinFee < failureFee) revert JobManagerFailureFeeAboveMinFee(failureFee, newMinFee);
        minFee = newMinFee;
        emit MinFeeSet(newMinFee);
    }

    /// @notice Sets the part of the fee an oracle keeps when failing a job; at most `minFee`.
    /// Applies to jobs requested from now on; each job keeps the value of its request.
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

    /// @notice Sets the wei per gas charged for callback gas by future requests (see `quoteFee`).
    function setCallbackGasPrice(uint96 newCallbackGasPrice) public onlyOwner {
        callbackGasPrice = newCallbackGasPrice;
        emit CallbackGasPriceSet(newCallbackGasPrice);
    }

    /// @notice Always reverts `JobManagerRenounceDisabled`: without an owner no oracle could ever be
    /// removed and no parameter changed. Hand over with `transferOwnership` instead.
    function renounceOwnership() public pure override {
        revert JobManagerRenounceDisabled();
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

    function _allowOracle(address oracle) private {
        _oracles[oracle] = true;
        emit OracleSet(oracle, true);
    }

    function _storeJob(uint256 jobId, address consumer, uint32 callbackGasLimit, bytes32 requestHash)
        private
        returns (uint64 deadline)
    {
        deadline = uint64(block.timestamp) + jobWindow;
        Job storage job = _jobs[jobId];
        job.requester = msg.sender;
        job.consumer = consumer;
        job.fee = uint96(msg.value);
        job.deadline = deadline;
        job.callbackGasLimit = callbackGasLimit;
        job.status = JobStatus.Requested;
        job.failureFee = failureFee;
        job.requestHash = requestHash;
    }

    function _checkRequested(uint256 jobId, Job storage job) private view {
        if (job.status != JobStatus.Requested) revert JobManagerJobNotRequested(jobId, job.status);
    }

    /// @dev The request hash is checked before the status, so a mismatch always means "not the
    /// request you meant" and `JobManagerJobNotRequested` always means "yours, already settled".
    function _settleableJob(uint256 jobId, bytes32 requestHash) private view returns (Job storage job) {
        job = _jobs[jobId];
        bytes32 expected = job.requestHash;
        if (expected != requestHash) revert JobManagerRequestMismatch(jobId, expected, requestHash);
        _checkRequested(jobId, job);
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
