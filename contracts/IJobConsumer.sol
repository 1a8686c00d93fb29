// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IJobConsumer
/// @notice A contract that receives the outcome of a cod job from the JobManager.
/// @dev The JobManager calls exactly one of these functions, once per job, with exactly the
/// `callbackGasLimit` gas the requester asked for. A consumer that reverts or runs out of gas
/// never blocks the result from being recorded or the operator from being paid: the JobManager
/// emits `CallbackFailed` instead. Consumers must check that the caller is the JobManager
/// (see `JobConsumer`).
interface IJobConsumer {
    /// @notice Called when `jobId` completes (its claimer, or the replicas' majority) `jobId`.
    /// @param jobId The job's id.
    /// @param resultCid The CID of the job's result directory (stdout, stderr, exitCode, outputs/).
    /// @param exitCode The job's exit code (0 for success).
    /// @param result The job's small result (at most `JobManager.MAX_RESULT_BYTES` = 256 bytes,
    /// possibly empty), covered by the replicas' agreement like the CID and exit code.
    function onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode, bytes calldata result) external;

    /// @notice Called when `jobId` fails (its claimer could not run it, or the replicas disagree).
    /// @param jobId The job's id.
    /// @param reason A human-readable reason, at most `JobManager.MAX_REASON_BYTES` bytes.
    function onJobFailed(uint256 jobId, string calldata reason) external;
}
