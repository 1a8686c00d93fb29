// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IJobManager} from "../IJobManager.sol";
import {JobConsumer} from "../JobConsumer.sol";
import {Cids} from "./Cids.sol";

/// @title TwoStagePipeline
/// @notice Chains two cod jobs: stage 1 runs over an input CID; when it succeeds, its result CID
/// becomes the input of stage 2, requested from inside the stage-1 callback.
/// @dev The spec of a stage is `prefix + cid + suffix`; prefixes and suffixes are JSON fragments
/// rendered off-chain from a template (e.g. prefix ends with `"source":"ipfs://`), and the CID is
/// checked by `Cids.isPlausible`, so no caller-controlled text reaches a spec unchecked.
/// Each run holds back the stage-2 fee (`reserved`) from the moment stage 1 is requested, so a
/// run never stalls for lack of funds. The stage-1 callback requests stage 2, so
/// `callbackGasLimit` must cover that request (~335k gas measured with ~400-byte specs: 500k is a
/// safe default), and `stageFee` must be at least `jobManager.quoteFee(address(this),
/// callbackGasLimit)`. A callback that fails leaves its run pending with a settled job:
/// `cancelStalled` recovers it.
contract TwoStagePipeline is JobConsumer, Ownable {
    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_STAGE1_PENDING = 1;
    uint8 public constant STATUS_STAGE2_PENDING = 2;
    uint8 public constant STATUS_COMPLETED = 3;
    uint8 public constant STATUS_FAILED = 4;

    /// @notice One run of the pipeline.
    struct Run {
        uint256 stage1JobId;
        uint256 stage2JobId;
        string stage1Cid;
        string finalCid;
        uint8 status;
    }

    /// @notice Fee paid for each stage's job.
    uint256 public immutable stageFee;
    /// @notice Callback gas limit of each stage's job.
    uint32 public immutable callbackGasLimit;
    string public stage1Prefix;
    string public stage1Suffix;
    string public stage2Prefix;
    string public stage2Suffix;
    /// @notice Number of runs started; run ids are 1..runCount.
    uint256 public runCount;
    /// @notice Balance held back for the stage 2 of runs still in stage 1.
    uint256 public reserved;
    /// @notice The run a job belongs to (0: none).
    mapping(uint256 jobId => uint256 runId) public runOfJob;
    mapping(uint256 runId => Run) private _runs;

    error TwoStagePipelineInvalidCid(string cid);
    error TwoStagePipelineInsufficientFunds(uint256 available, uint256 required);
    error TwoStagePipelineRunNotPending(uint256 runId);
    error TwoStagePipelineSendFailed(address to, uint256 amount);

    event PipelineStarted(uint256 indexed runId, uint256 stage1JobId, string inputCid);
    event StageRequested(uint256 indexed runId, uint8 stage, uint256 jobId);
    event StageCompleted(uint256 indexed runId, uint8 stage, uint256 jobId, string resultCid, uint8 exitCode);
    event PipelineCompleted(uint256 indexed runId, string finalCid);
    event PipelineFailed(uint256 indexed runId, uint8 stage, string reason);

    /// @param jobManager_ The JobManager.
    /// @param stage1Prefix_ Stage-1 spec text before the input CID.
    /// @param stage1Suffix_ Stage-1 spec text after the input CID.
    /// @param stage2Prefix_ Stage-2 spec text before the stage-1 result CID.
    /// @param stage2Suffix_ Stage-2 spec text after the stage-1 result CID.
    /// @param stageFee_ Fee (wei) paid per stage job.
    /// @param callbackGasLimit_ Callback gas limit of each stage job.
    constructor(
        IJobManager jobManager_,
        string memory stage1Prefix_,
        string memory stage1Suffix_,
        string memory stage2Prefix_,
        string memory stage2Suffix_,
        uint256 stageFee_,
        uint32 callbackGasLimit_
    ) JobConsumer(jobManager_) Ownable(msg.sender) {
        stage1Prefix = stage1Prefix_;
        stage1Suffix = stage1Suffix_;
        stage2Prefix = stage2Prefix_;
        stage2Suffix = stage2Suffix_;
        stageFee = stageFee_;
        callbackGasLimit = callbackGasLimit_;
    }

    /// @notice Returns run `runId` (all zero if it does not exist).
    function getRun(uint256 runId) external view returns (Run memory) {
        return _runs[runId];
    }

    /// @notice Starts a run over `inputCid`. Anyone may call; fees come from this contract's
    /// balance (including `msg.value`), which must cover both stages beyond `reserved`.
    /// @return runId The new run's id.
    function start(string calldata inputCid) external payable returns (uint256 runId) {
        if (!Cids.isPlausible(inputCid)) revert TwoStagePipelineInvalidCid(inputCid);
        uint256 available = address(this).balance - reserved;
        if (available < 2 * stageFee) revert TwoStagePipelineInsufficientFunds(available, 2 * stageFee);

        runId = ++runCount;
        reserved += stageFee;
        Run storage run = _runs[runId];
        run.status = STATUS_STAGE1_PENDING;
        uint256 jobId = _requestJob(string.concat(stage1Prefix, inputCid, stage1Suffix), stageFee, callbackGasLimit);
        run.stage1JobId = jobId;
        runOfJob[jobId] = runId;
        emit PipelineStarted(runId, jobId, inputCid);
    }

    /// @notice Gives up on run `runId` whose current job is stalled, and marks the run failed:
    /// a job still pending at the JobManager is cancelled once past its deadline (its fee is
    /// refunded to this contract, see `claimRefunds`); a job the JobManager already settled whose
    /// callback failed (reverted or ran out of gas, `CallbackFailed`) will never call back, so the
    /// run is failed at once. Anyone may call; reverts while a pending job's deadline has not passed.
    /// @param terms The current job's terms, from its `JobRequested` event (only used to cancel).
    function cancelStalled(uint256 runId, IJobManager.Terms calldata terms) external {
        Run storage run = _runs[runId];
        uint8 status = run.status;
        if (status != STATUS_STAGE1_PENDING && status != STATUS_STAGE2_PENDING) {
            revert TwoStagePipelineRunNotPending(runId);
        }
        uint8 stage = status == STATUS_STAGE1_PENDING ? 1 : 2;
        uint256 jobId = stage == 1 ? run.stage1JobId : run.stage2JobId;
        if (_isOpen(jobId)) {
            _fail(runId, run, stage, "cancelled after deadline");
            jobManager.cancelJob(jobId, terms);
        } else {
            _fail(runId, run, stage, "callback failed");
        }
    }

    /// @notice Sends `amount` of the unreserved balance to `to`.
    function withdrawFunds(address payable to, uint256 amount) external onlyOwner {
        uint256 available = address(this).balance - reserved;
        if (amount > available) revert TwoStagePipelineInsufficientFunds(available, amount);
        (bool sent,) = to.call{value: amount}("");
        if (!sent) revert TwoStagePipelineSendFailed(to, amount);
    }

    /// @dev `JobConsumer` lets only this contract's own unsettled jobs through, so the run is
    /// waiting for exactly this job: stage 1 (STAGE1_PENDING) or stage 2 (STAGE2_PENDING).
    function _onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode, bytes calldata)
        internal
        override
    {
        uint256 runId = runOfJob[jobId];
        Run storage run = _runs[runId];
        if (jobId == run.stage1JobId) {
            run.stage1Cid = resultCid;
            emit StageCompleted(runId, 1, jobId, resultCid, exitCode);
            if (exitCode != 0) return _fail(runId, run, 1, "stage 1 exited with a non-zero code");
            if (!Cids.isPlausible(resultCid)) return _fail(runId, run, 1, "stage 1 result CID rejected");
            reserved -= stageFee;
            run.status = STATUS_STAGE2_PENDING;
            string memory spec = string.concat(stage2Prefix, resultCid, stage2Suffix);
            (bool requested, uint256 id) = _tryRequestJob(spec, stageFee, callbackGasLimit);
            if (requested) {
                run.stage2JobId = id;
                runOfJob[id] = runId;
                emit StageRequested(runId, 2, id);
            } else {
                run.status = STATUS_FAILED;
                emit PipelineFailed(runId, 2, "stage 2 request rejected");
            }
        } else {
            run.finalCid = resultCid;
            emit StageCompleted(runId, 2, jobId, resultCid, exitCode);
            if (exitCode != 0) return _fail(runId, run, 2, "stage 2 exited with a non-zero code");
            run.status = STATUS_COMPLETED;
            emit PipelineCompleted(runId, resultCid);
        }
    }

    /// @dev As `_onJobResult`: the run is waiting for exactly this job. Fits in
    /// `FAIL_CALLBACK_GAS_LIMIT` with the longest reason (tested).
    function _onJobFailed(uint256 jobId, string calldata reason) internal override {
        uint256 runId = runOfJob[jobId];
        Run storage run = _runs[runId];
        _fail(runId, run, jobId == run.stage1JobId ? 1 : 2, reason);
    }

    /// @dev Marks the run failed at `stage`, releasing its stage-2 reservation if still held.
    function _fail(uint256 runId, Run storage run, uint8 stage, string memory reason) private {
        if (run.status == STATUS_STAGE1_PENDING) reserved -= stageFee;
        run.status = STATUS_FAILED;
        emit PipelineFailed(runId, stage, reason);
    }
}
