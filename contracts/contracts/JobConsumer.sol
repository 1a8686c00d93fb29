// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "./IJobConsumer.sol";
import {IJobManager} from "./IJobManager.sol";

/// @title JobConsumer
/// @notice Base for contracts that request cod jobs and receive their outcome. Accepts
/// `onJobResult` / `onJobFailed` only from the JobManager and forwards them to the internal hooks
/// `_onJobResult` / `_onJobFailed`, which a consumer overrides.
/// @dev Fees are paid from this contract's balance (`receive` lets anyone fund it). Refunds of
/// failed or cancelled jobs are credited by the JobManager to this contract, as the requester;
/// `claimRefunds` pulls them back here.
abstract contract JobConsumer is IJobConsumer {
    /// @notice The JobManager this consumer requests from and accepts callbacks from.
    IJobManager public immutable jobManager;

    /// @dev `caller` is not the JobManager.
    error JobConsumerUnauthorizedCaller(address caller);
    /// @dev The JobManager address is zero.
    error JobConsumerZeroJobManager();

    /// @param jobManager_ The JobManager to use.
    constructor(IJobManager jobManager_) {
        if (address(jobManager_) == address(0)) revert JobConsumerZeroJobManager();
        jobManager = jobManager_;
    }

    modifier onlyJobManager() {
        _checkJobManager();
        _;
    }

    /// @notice Accepts ETH used to pay job fees.
    receive() external payable virtual {}

    /// @inheritdoc IJobConsumer
    function onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode) external onlyJobManager {
        _onJobResult(jobId, resultCid, exitCode);
    }

    /// @inheritdoc IJobConsumer
    function onJobFailed(uint256 jobId, string calldata reason) external onlyJobManager {
        _onJobFailed(jobId, reason);
    }

    /// @notice Pulls this contract's refunds (failed or cancelled jobs) from the JobManager.
    /// Anyone may call it: the ETH can only come here.
    function claimRefunds() external {
        jobManager.withdraw();
    }

    /// @dev Requests a job with this contract as consumer, paying `fee` from this contract's balance.
    function _requestJob(string memory spec, uint256 fee, uint32 callbackGasLimit) internal returns (uint256) {
        return jobManager.requestJob{value: fee}(spec, address(this), callbackGasLimit);
    }

    /// @dev Reverts unless the caller is the JobManager.
    function _checkJobManager() internal view {
        if (msg.sender != address(jobManager)) revert JobConsumerUnauthorizedCaller(msg.sender);
    }

    /// @dev Hook: `jobId` was fulfilled. Runs within the job's callback gas limit.
    function _onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode) internal virtual;

    /// @dev Hook: `jobId` was failed by the oracle. Runs within the job's callback gas limit.
    function _onJobFailed(uint256 jobId, string calldata reason) internal virtual;
}
