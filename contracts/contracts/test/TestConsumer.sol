// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobManager} from "../IJobManager.sol";
import {JobConsumer} from "../JobConsumer.sol";

/// @dev Trivial consumer: records the last callback and measures the gas it was given.
contract TestConsumer is JobConsumer {
    uint256 public lastJobId;
    string public lastResultCid;
    uint8 public lastExitCode;
    string public lastReason;
    uint256 public gasAtEntry;
    uint256 public results;
    uint256 public failures;
    uint8 public statusAtCallback;

    constructor(IJobManager jobManager_) JobConsumer(jobManager_) {}

    function request(string calldata spec, uint256 fee, uint32 callbackGasLimit) external returns (uint256) {
        return _requestJob(spec, fee, callbackGasLimit);
    }

    function _onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode) internal override {
        gasAtEntry = gasleft();
        lastJobId = jobId;
        lastResultCid = resultCid;
        lastExitCode = exitCode;
        statusAtCallback = uint8(jobManager.getJob(jobId).status);
        ++results;
    }

    function _onJobFailed(uint256 jobId, string calldata reason) internal override {
        gasAtEntry = gasleft();
        lastJobId = jobId;
        lastReason = reason;
        statusAtCallback = uint8(jobManager.getJob(jobId).status);
        ++failures;
    }
}
