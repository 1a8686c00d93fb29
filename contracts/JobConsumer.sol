// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "./IJobConsumer.sol";
import {IJobManager} from "./IJobManager.sol";

/// @title JobConsumer
/// @notice Base for contracts that request cod jobs and receive their outcome. Accepts
/// `onJobResult` / `onJobFailed` only from the JobManager, and only for jobs it requested itself
/// (`_requestJob`) that are not settled yet, and forwards them to the internal hooks
/// `_onJobResult` / `_onJobFailed`, which a consumer overrides.
/// @dev Fees are paid from this contract's balance (`receive` lets anyone fund it). Refunds of
/// failed or cancelled jobs are credited by the JobManager to this contract, as the requester;
/// `claimRefunds` pulls them back here. Anyone can request a job naming this contract as its
/// consumer; such a callback is refused (`JobConsumerUnknownJob`, recorded by the JobManager as
/// `CallbackFailed`), so hooks only ever see this contract's own jobs, each at most once.
abstract contract JobConsumer is IJobConsumer {
    /// @notice The JobManager this consumer requests from and accepts callbacks from.
    IJobManager public immutable jobManager;

    mapping(uint256 jobId => bool) private _pendingJobs;

    /// @dev `caller` is not the JobManager.
    error JobConsumerUnauthorizedCaller(address caller);
    /// @dev The JobManager address is zero.
    error JobConsumerZeroJobManager();
    /// @dev `jobId` was not requested by this contract, or its callback was already delivered.
    error JobConsumerUnknownJob(uint256 jobId);

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
    /// @dev Reverts `JobConsumerUnknownJob` unless `jobId` is one of this contract's pending jobs;
    /// the pending mark is cleared before the hook runs.
    function onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode, bytes calldata result)
        external
        onlyJobManager
    {
        _settlePending(jobId);
        _onJobResult(jobId, resultCid, exitCode, result);
    }

    /// @inheritdoc IJobConsumer
    /// @dev As `onJobResult`. Runs within at most `JobManager.FAIL_CALLBACK_GAS_LIMIT` gas.
    function onJobFailed(uint256 jobId, string calldata reason) external onlyJobManager {
        _settlePending(jobId);
        _onJobFailed(jobId, reason);
    }

    /// @notice Whether `jobId` was requested by this contract and its callback has not arrived yet.
    function isPendingJob(uint256 jobId) public view returns (bool) {
        return _pendingJobs[jobId];
    }

    /// @notice Pulls this contract's refunds (failed or cancelled jobs) from the JobManager.
    /// Anyone may call it: the ETH can only come here.
    function claimRefunds() external {
        jobManager.withdraw();
    }

    /// @dev Requests a job with this contract as consumer, paying `fee` from this contract's balance,
    /// and records it as pending. `fee` must be at least `jobManager.quoteFee(address(this),
    /// callbackGasLimit)`.
    function _requestJob(string memory spec, uint256 fee, uint32 callbackGasLimit) internal returns (uint256 jobId) {
        jobId = jobManager.requestJob{value: fee}(spec, address(this), callbackGasLimit);
        _pendingJobs[jobId] = true;
    }

    /// @dev As `_requestJob`, with request options (replicas, lease, restricted claimers); `fee`
    /// must be at least `jobManager.quoteFee(address(this), callbackGasLimit, opts.replicas)`.
    function _requestJobWith(string memory spec, uint256 fee, uint32 callbackGasLimit, IJobManager.Options memory opts)
        internal
        returns (uint256 jobId)
    {
        jobId = jobManager.requestJobWith{value: fee}(spec, address(this), callbackGasLimit, opts);
        _pendingJobs[jobId] = true;
    }

    /// @dev Whether `jobId` is still open at the JobManager (requested or claimed, no result).
    function _isOpen(uint256 jobId) internal view returns (bool) {
        IJobManager.JobStatus status = jobManager.getJob(jobId).status;
        return status == IJobManager.JobStatus.Requested || status == IJobManager.JobStatus.Claimed;
    }

    /// @dev Reverts unless the caller is the JobManager.
    function _checkJobManager() internal view {
        if (msg.sender != address(jobManager)) revert JobConsumerUnauthorizedCaller(msg.sender);
    }

    /// @dev As `_requestJob`, but returns `(false, 0)` instead of reverting when the JobManager
    /// refuses the request (paused, fee too low, ...): for requests made inside a callback.
    function _tryRequestJob(string memory spec, uint256 fee, uint32 callbackGasLimit)
        internal
        returns (bool requested, uint256 jobId)
    {
        try jobManager.requestJob{value: fee}(spec, address(this), callbackGasLimit) returns (uint256 id) {
            _pendingJobs[id] = true;
            return (true, id);
        } catch {
            return (false, 0);
        }
    }

    /// @dev Clears the pending mark of `jobId`; reverts `JobConsumerUnknownJob` if there is none.
    function _settlePending(uint256 jobId) private {
        if (!_pendingJobs[jobId]) revert JobConsumerUnknownJob(jobId);
        delete _pendingJobs[jobId];
    }

    /// @dev Hook: `jobId` completed with `resultCid`, `exitCode` and the small `result` (≤ 256
    /// bytes). Runs within the job's callback gas limit.
    function _onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode, bytes calldata result)
        internal
        virtual;

    /// @dev Hook: `jobId` failed (its claimer could not run it, or the replicas disagreed). Runs within `min(callbackGasLimit,
    /// FAIL_CALLBACK_GAS_LIMIT)` gas (50,000): keep it to a few storage writes and an event.
    function _onJobFailed(uint256 jobId, string calldata reason) internal virtual;
}
