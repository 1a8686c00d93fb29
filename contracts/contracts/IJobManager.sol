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
    struct Job {
        address requester;
        address consumer;
        uint96 fee;
        uint64 deadline;
        uint32 callbackGasLimit;
        JobStatus status;
        uint8 exitCode;
        string resultCid;
    }

    // ----------------------------------------------------------------------------------- errors

    /// @dev `msg.value` is below the minimum fee.
    error JobManagerFeeTooLow(uint256 fee, uint256 minFee);
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

    // ----------------------------------------------------------------------------------- events

    /// @notice A job was requested; `spec` is the job's JSON spec (not stored on-chain).
    event JobRequested(
        uint256 indexed jobId,
        address indexed requester,
        address indexed consumer,
        string spec,
        uint256 fee,
        uint64 deadline
    );
    /// @notice A job was fulfilled by an oracle.
    event JobCompleted(uint256 indexed jobId, string resultCid, uint8 exitCode);
    /// @notice A job was failed by an oracle.
    event JobFailed(uint256 indexed jobId, string reason);
    /// @notice A job was cancelled by its requester after its deadline.
    event JobCancelled(uint256 indexed jobId);
    /// @notice The consumer's callback for `jobId` reverted or ran out of gas; `reason` is its
    /// revert data, truncated to `MAX_CALLBACK_REASON_BYTES`.
    event CallbackFailed(uint256 indexed jobId, bytes reason);
    /// @notice `account` withdrew `amount` to `to`.
    event Withdrawn(address indexed account, address to, uint256 amount);
    /// @notice An oracle was allowed or disallowed.
    event OracleSet(address indexed oracle, bool allowed);
    /// @notice The minimum fee changed.
    event MinFeeSet(uint96 minFee);
    /// @notice The failure fee changed.
    event FailureFeeSet(uint96 failureFee);
    /// @notice The job window (seconds from request to deadline) changed.
    event JobWindowSet(uint64 jobWindow);
    /// @notice The maximum callback gas limit changed.
    event MaxCallbackGasLimitSet(uint32 maxCallbackGasLimit);

    // -------------------------------------------------------------------------------- functions

    /// @notice Requests a job; `msg.value` is the fee, escrowed until the job is settled.
    /// @param spec The job spec (JSON text), 1..MAX_SPEC_BYTES bytes; emitted, not stored.
    /// @param consumer The contract to call back, or the zero address for no callback.
    /// @param callbackGasLimit Exact gas for the callback, at most `maxCallbackGasLimit`.
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
}
