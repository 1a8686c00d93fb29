// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobManager} from "../IJobManager.sol";
import {JobConsumer} from "../JobConsumer.sol";

/// @dev Trivial consumer: records the last result and measures the gas it was given. A failure is
/// only counted and reported by event, to stay well inside `FAIL_CALLBACK_GAS_LIMIT`.
contract TestConsumer is JobConsumer {
    event FailureSeen(uint256 indexed jobId, string reason, uint8 statusAtCallback, uint256 gasAtEntry);

    uint256 public lastJobId;
    string public lastResultCid;
    uint8 public lastExitCode;
    uint256 public gasAtEntry;
    uint256 public results;
    uint256 public failures;
    uint8 public statusAtCallback;
    bytes public lastResult;

    constructor(IJobManager jobManager_) JobConsumer(jobManager_) {}

    function request(string calldata spec, uint256 fee, uint32 callbackGasLimit) external returns (uint256) {
        return _requestJob(spec, fee, callbackGasLimit);
    }

    /// @dev `_tryRequestJob`, exposed: reports a refused request instead of reverting.
    function tryRequest(string calldata spec, uint256 fee, uint32 callbackGasLimit)
        external
        returns (bool requested, uint256 jobId)
    {
        return _tryRequestJob(spec, fee, callbackGasLimit);
    }

    function _onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode, bytes calldata result)
        internal
        override
    {
        gasAtEntry = gasleft();
        lastResult = result;
        lastJobId = jobId;
        lastResultCid = resultCid;
        lastExitCode = exitCode;
        statusAtCallback = uint8(jobManager.getJob(jobId).status);
        ++results;
    }

    function _onJobFailed(uint256 jobId, string calldata reason) internal override {
        uint256 atEntry = gasleft();
        ++failures;
        emit FailureSeen(jobId, reason, uint8(jobManager.getJob(jobId).status), atEntry);
    }
}
