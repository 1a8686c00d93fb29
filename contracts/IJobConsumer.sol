// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IJobConsumer
/// @notice A contract that receives the outcome of a cod job from the JobManager.
/// @dev The JobManager calls exactly one of these functions, once per job, with exactly the
/// `callbackGasLimit` gas the requester asked for. A consumer that reverts or runs out of gas
/// never blocks the result from being recorded or the oracle from being paid: the JobManager
/// emits `CallbackFailed` instead. Consumers must check that the caller is the JobManager
/// (see `JobConsumer`).
interface IJobConsumer {
    /// @notice Called when an oracle fulfils `jobId`.
    /// @param jobId The job's id.
    /// @param resultCid The CID of the job's result directory (stdout, stderr, exitCode, outputs/).
    /// @param exitCode The job's exit code (0 for success).
    function onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode) external;

    /// @notice Called when an oracle fails `jobId` (the job could not be run).
    /// @param jobId The job's id.
    /// @param reason A human-readable reason, at most `JobManager.MAX_REASON_BYTES` bytes.
    function onJobFailed(uint256 jobId, string calldata reason) external;
}
