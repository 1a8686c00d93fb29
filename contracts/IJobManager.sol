// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IJobManager
/// @notice The requester-facing surface of cod's JobManager: types, events, errors and the
/// functions a consumer contract calls. Admin functions live on `JobManager` only.
interface IJobManager {
    /// @notice Lifecycle of a job. `None` means the id was never issued.
    enum JobStatus {
        None,
        Requested,
        Completed,
        Failed,
        Cancelled
    }

    /// @notice What the JobManager keeps per job. The spec itself is only emitted, never stored.
    /// `callbackGasLimit` is 0 for a job without consumer; `failureFee` is the oracle's share on
    /// `failJob`, fixed at request time; `requestHash` binds fulfilments to this very request
    /// (see `requestJob`). Field order is part of the ABI: off-chain code decodes it by position.
    struct Job {
        address requester;
        address consumer;
        uint96 fee;
        uint64 deadline;
        uint32 callbackGasLimit;
        JobStatus status;
        uint8 exitCode;
        uint96 failureFee;
        string resultCid;
        bytes32 requestHash;
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
    /// @dev `account` is not an authorised oracle.
    error JobManagerUnauthorizedOracle(address account);
    /// @dev `account` is not the requester of `jobId`.
    error JobManagerUnauthorizedRequester(uint256 jobId, address account);
    /// @dev The job is not in the `Requested` state (unknown, or already settled).
    error JobManagerJobNotRequested(uint256 jobId, JobStatus status);
    /// @dev The job's deadline has passed: it can no longer be fulfilled, only failed or cancelled.
    error JobManagerDeadlinePassed(uint256 jobId, uint64 deadline);
    /// @dev The job's deadline has not passed yet: it cannot be cancelled.
    error JobManagerDeadlineNotReached(uint256 jobId, uint64 deadline);
    /// @dev The result CID is empty or longer than `MAX_RESULT_CID_BYTES`.
    error JobManagerInvalidResultCidLength(uint256 length, uint256 maxLength);
    /// @dev The failure reason is longer than `MAX_REASON_BYTES`.
    error JobManagerReasonTooLong(uint256 length, uint256 maxLength);
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
    /// @dev The job window is outside [`MIN_JOB_WINDOW`, `MAX_JOB_WINDOW`].
    error JobManagerInvalidJobWindow(uint64 jobWindow);
    /// @dev The max callback gas limit exceeds `CALLBACK_GAS_LIMIT_CAP`.
    error JobManagerInvalidMaxCallbackGasLimit(uint32 maxCallbackGasLimit);
    /// @dev The failure fee would exceed the minimum fee.
    error JobManagerFailureFeeAboveMinFee(uint96 failureFee, uint96 minFee);
    /// @dev The `requestHash` given by the oracle is not the one stored for `jobId` (`expected` is 0
    /// when the job does not exist): the transaction was meant for another request.
    error JobManagerRequestMismatch(uint256 jobId, bytes32 expected, bytes32 given);
    /// @dev No addition of `oracle` is scheduled (`effectiveAt` 0), or its delay has not elapsed.
    error JobManagerOracleChangeNotReady(address oracle, uint64 effectiveAt);
    /// @dev Renouncing ownership is disabled: it would freeze the oracle set and every parameter.
    error JobManagerRenounceDisabled();

    // ----------------------------------------------------------------------------------- events

    /// @notice A job was requested; `spec` is the job's JSON spec (not stored on-chain).
    /// `callbackGasLimit` is as stored (0 without consumer); `requestHash` is what `fulfillJob`
    /// and `failJob` must quote.
    event JobRequested(
        uint256 indexed jobId,
        address indexed requester,
        address indexed consumer,
        string spec,
        uint256 fee,
        uint64 deadline,
        uint32 callbackGasLimit,
        bytes32 requestHash
    );
    /// @notice A job was fulfilled by `oracle`.
    event JobCompleted(uint256 indexed jobId, string resultCid, uint8 exitCode, address indexed oracle);
    /// @notice A job was failed by `oracle`.
    event JobFailed(uint256 indexed jobId, string reason, address indexed oracle);
    /// @notice A job was cancelled by its requester after its deadline.
    event JobCancelled(uint256 indexed jobId);
    /// @notice The consumer's callback for `jobId` reverted or ran out of gas; `reason` is its
    /// revert data, truncated to `MAX_CALLBACK_REASON_BYTES`.
    event CallbackFailed(uint256 indexed jobId, bytes reason);
    /// @notice `account` withdrew `amount` to `to`.
    event Withdrawn(address indexed account, address to, uint256 amount);
    /// @notice An oracle was allowed (effective now) or disallowed.
    event OracleSet(address indexed oracle, bool allowed);
    /// @notice Adding `oracle` was scheduled; `activateOracle` makes it effective from `effectiveAt`.
    event OracleChangeScheduled(address indexed oracle, uint64 effectiveAt);
    /// @notice The gas price (wei per gas) at which callback gas is charged changed.
    event CallbackGasPriceSet(uint96 callbackGasPrice);
    /// @notice The minimum fee changed.
    event MinFeeSet(uint96 minFee);
    /// @notice The failure fee changed.
    event FailureFeeSet(uint96 failureFee);
    /// @notice The job window (seconds from request to deadline) changed.
    event JobWindowSet(uint64 jobWindow);
    /// @notice The maximum callback gas limit changed.
    event MaxCallbackGasLimitSet(uint32 maxCallbackGasLimit);

    // -------------------------------------------------------------------------------- functions

    /// @notice Requests a job; `msg.value` is the fee, escrowed until the job is settled. It must be
    /// at least `quoteFee(consumer, callbackGasLimit)`.
    /// @param spec The job spec (JSON text), 1..MAX_SPEC_BYTES bytes; emitted, not stored.
    /// @param consumer The contract to call back, or the zero address for no callback.
    /// @param callbackGasLimit Exact gas for the callback, at most `maxCallbackGasLimit`; stored as
    /// 0 when `consumer` is the zero address.
    /// @return jobId The new job's id (ids start at 1).
    function requestJob(string calldata spec, address consumer, uint32 callbackGasLimit)
        external
        payable
        returns (uint256 jobId);

    /// @notice Cancels a job whose deadline has passed; the fee becomes withdrawable by the requester.
    /// @param jobId The job's id.
    function cancelJob(uint256 jobId) external;

    /// @notice Sends the caller's whole withdrawable balance to the caller.
    function withdraw() external;

    /// @notice Sends the caller's whole withdrawable balance to `to`.
    /// @param to The recipient (not the zero address).
    function withdrawTo(address payable to) external;

    /// @notice Returns the stored record of `jobId` (all zero, status `None`, if it never existed).
    function getJob(uint256 jobId) external view returns (Job memory);

    /// @notice Returns how much `account` can withdraw.
    function withdrawable(address account) external view returns (uint256);

    /// @notice Returns the current minimum fee.
    function minFee() external view returns (uint96);

    /// @notice Returns the current maximum callback gas limit.
    function maxCallbackGasLimit() external view returns (uint32);

    /// @notice Returns the smallest fee `requestJob(spec, consumer, callbackGasLimit)` accepts now:
    /// `minFee + (consumer == address(0) ? 0 : callbackGasLimit) * callbackGasPrice`.
    /// @param consumer The consumer the request will name (zero: no callback, no callback charge).
    /// @param callbackGasLimit The callback gas limit the request will ask for.
    function quoteFee(address consumer, uint32 callbackGasLimit) external view returns (uint256);
}
