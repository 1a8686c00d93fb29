// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {IJobManager} from "../IJobManager.sol";
import {JobConsumer} from "../JobConsumer.sol";
import {Cids} from "./Cids.sol";

/// @title FanOutConsumer
/// @notice Fans out one "map" job per input CID, then, once every map result is back, requests a
/// single "combine" job over all the map results and records its result.
/// @dev Map spec: `mapPrefix + cid + mapSuffix`. Combine spec: `combinePrefix + entries +
/// combineSuffix`, where `entries` is, for each map result i (in input order), the JSON object
/// `{"source":"ipfs://<cid_i>","target":"/inputs/<i>"}`, joined with `,` — so a combine template
/// renders as `..."inputs":[` + entries + `],...`. Every CID is checked by `Cids.isPlausible`.
/// The combine fee is held back (`reserved`) from the start of a batch. The last map callback
/// requests the combine job, so `callbackGasLimit` must cover that; it grows with the batch size
/// (measured with ~200-byte templates: ~330k gas for 1 input, ~360k for 4, ~470k for 16), and `fee`
/// must be at least `jobManager.quoteFee(address(this), callbackGasLimit)`.
contract FanOutConsumer is JobConsumer, Ownable {
    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_MAPPING = 1;
    uint8 public constant STATUS_COMBINING = 2;
    uint8 public constant STATUS_COMPLETED = 3;
    uint8 public constant STATUS_FAILED = 4;
    /// @notice Most inputs one batch may fan out to.
    uint256 public constant MAX_INPUTS = 16;

    /// @notice One fan-out/combine batch.
    struct Batch {
        uint256[] mapJobIds;
        string[] mapResultCids;
        uint256 remaining;
        uint256 combineJobId;
        string finalCid;
        uint8 status;
    }

    struct JobRef {
        uint128 batchId;
        uint64 index; // map jobs: position in the batch; unused for the combine job
        bool isCombine;
    }

    /// @notice Fee paid for each job (map or combine).
    uint256 public immutable fee;
    /// @notice Callback gas limit of each job.
    uint32 public immutable callbackGasLimit;
    string public mapPrefix;
    string public mapSuffix;
    string public combinePrefix;
    string public combineSuffix;
    /// @notice Number of batches started; batch ids are 1..batchCount.
    uint256 public batchCount;
    /// @notice Balance held back for the combine jobs of batches still mapping.
    uint256 public reserved;
    mapping(uint256 jobId => JobRef) private _jobRefs;
    mapping(uint256 batchId => Batch) private _batches;

    error FanOutConsumerInvalidInputCount(uint256 count, uint256 maxCount);
    error FanOutConsumerInvalidCid(string cid);
    error FanOutConsumerInsufficientFunds(uint256 available, uint256 required);
    error FanOutConsumerSendFailed(address to, uint256 amount);

    event BatchStarted(uint256 indexed batchId, uint256[] mapJobIds);
    event MapCompleted(uint256 indexed batchId, uint256 index, uint256 jobId, string resultCid, uint8 exitCode);
    event CombineRequested(uint256 indexed batchId, uint256 jobId);
    event BatchCompleted(uint256 indexed batchId, string finalCid);
    event BatchFailed(uint256 indexed batchId, uint256 jobId, string reason);

    /// @param jobManager_ The JobManager.
    /// @param mapPrefix_ Map spec text before the input CID.
    /// @param mapSuffix_ Map spec text after the input CID.
    /// @param combinePrefix_ Combine spec text before the joined entries.
    /// @param combineSuffix_ Combine spec text after the joined entries.
    /// @param fee_ Fee (wei) paid per job.
    /// @param callbackGasLimit_ Callback gas limit of each job.
    constructor(
        IJobManager jobManager_,
        string memory mapPrefix_,
        string memory mapSuffix_,
        string memory combinePrefix_,
        string memory combineSuffix_,
        uint256 fee_,
        uint32 callbackGasLimit_
    ) JobConsumer(jobManager_) Ownable(msg.sender) {
        mapPrefix = mapPrefix_;
        mapSuffix = mapSuffix_;
        combinePrefix = combinePrefix_;
        combineSuffix = combineSuffix_;
        fee = fee_;
        callbackGasLimit = callbackGasLimit_;
    }

    /// @notice Returns batch `batchId` (all zero if it does not exist).
    function getBatch(uint256 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice Starts a batch: one map job per CID in `inputCids` (1..MAX_INPUTS). Anyone may call;
    /// fees come from this contract's balance (including `msg.value`), which must cover
    /// `inputCids.length + 1` jobs beyond `reserved`.
    /// @return batchId The new batch's id.
    function start(string[] calldata inputCids) external payable returns (uint256 batchId) {
        uint256 n = inputCids.length;
        if (n == 0 || n > MAX_INPUTS) revert FanOutConsumerInvalidInputCount(n, MAX_INPUTS);
        for (uint256 i = 0; i < n; ++i) {
            if (!Cids.isPlausible(inputCids[i])) revert FanOutConsumerInvalidCid(inputCids[i]);
        }
        uint256 available = address(this).balance - reserved;
        if (available < (n + 1) * fee) revert FanOutConsumerInsufficientFunds(available, (n + 1) * fee);

        batchId = ++batchCount;
        reserved += fee;
        Batch storage batch = _batches[batchId];
        batch.status = STATUS_MAPPING;
        batch.remaining = n;
        batch.mapResultCids = new string[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint256 jobId = _requestJob(string.concat(mapPrefix, inputCids[i], mapSuffix), fee, callbackGasLimit);
            batch.mapJobIds.push(jobId);
            _jobRefs[jobId] = JobRef(uint128(batchId), uint64(i), false);
        }
        emit BatchStarted(batchId, batch.mapJobIds);
    }

    /// @notice Cancels every job of batch `batchId` still pending at the JobManager (all must be
    /// past their deadline) and marks the batch failed if it was still running. Refunds go to this
    /// contract (see `claimRefunds`). Anyone may call.
    /// @param terms The terms of the batch's jobs, from their `JobRequested` events: one per map
    /// job in order, then the combine job's if it was requested (settled jobs' entries are unused).
    function cancelStalled(uint256 batchId, IJobManager.Terms[] calldata terms) external {
        Batch storage batch = _batches[batchId];
        if (batch.status == STATUS_MAPPING || batch.status == STATUS_COMBINING) {
            _fail(batchId, batch, 0, "cancelled after deadline");
        }
        uint256[] memory ids = batch.mapJobIds;
        for (uint256 i = 0; i < ids.length; ++i) {
            _cancelIfOpen(ids[i], terms[i]);
        }
        if (batch.combineJobId != 0) _cancelIfOpen(batch.combineJobId, terms[ids.length]);
    }

    /// @notice Sends `amount` of the unreserved balance to `to`.
    function withdrawFunds(address payable to, uint256 amount) external onlyOwner {
        uint256 available = address(this).balance - reserved;
        if (amount > available) revert FanOutConsumerInsufficientFunds(available, amount);
        (bool sent,) = to.call{value: amount}("");
        if (!sent) revert FanOutConsumerSendFailed(to, amount);
    }

    /// @dev `JobConsumer` lets only this contract's own unsettled jobs through: `ref` is set.
    function _onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode, bytes calldata)
        internal
        override
    {
        JobRef memory ref = _jobRefs[jobId];
        Batch storage batch = _batches[ref.batchId];
        if (ref.isCombine) {
            // status is COMBINING: a combine job is only cancelled together with its batch
            batch.finalCid = resultCid;
            if (exitCode != 0) return _fail(ref.batchId, batch, jobId, "combine job exited with a non-zero code");
            batch.status = STATUS_COMPLETED;
            emit BatchCompleted(ref.batchId, resultCid);
            return;
        }
        batch.mapResultCids[ref.index] = resultCid;
        emit MapCompleted(ref.batchId, ref.index, jobId, resultCid, exitCode);
        if (batch.status != STATUS_MAPPING) return; // a late result of a failed batch
        if (exitCode != 0) return _fail(ref.batchId, batch, jobId, "map job exited with a non-zero code");
        if (!Cids.isPlausible(resultCid)) return _fail(ref.batchId, batch, jobId, "map result CID rejected");
        if (--batch.remaining == 0) _requestCombine(ref.batchId, batch);
    }

    /// @dev Fits in `FAIL_CALLBACK_GAS_LIMIT` with the longest reason (tested).
    function _onJobFailed(uint256 jobId, string calldata reason) internal override {
        JobRef memory ref = _jobRefs[jobId];
        Batch storage batch = _batches[ref.batchId];
        bool running = ref.isCombine ? batch.status == STATUS_COMBINING : batch.status == STATUS_MAPPING;
        if (running) _fail(ref.batchId, batch, jobId, reason);
    }

    function _requestCombine(uint256 batchId, Batch storage batch) private {
        reserved -= fee;
        batch.status = STATUS_COMBINING;
        string[] storage cids = batch.mapResultCids;
        bytes memory entries;
        for (uint256 i = 0; i < cids.length; ++i) {
            entries = bytes.concat(
                entries,
                i == 0 ? bytes("") : bytes(","),
                '{"source":"ipfs://',
                bytes(cids[i]),
                '","target":"/inputs/',
                bytes(Strings.toString(i)),
                '"}'
            );
        }
        string memory spec = string.concat(combinePrefix, string(entries), combineSuffix);
        (bool requested, uint256 id) = _tryRequestJob(spec, fee, callbackGasLimit);
        if (requested) {
            batch.combineJobId = id;
            _jobRefs[id] = JobRef(uint128(batchId), 0, true);
            emit CombineRequested(batchId, id);
        } else {
            batch.status = STATUS_FAILED;
            emit BatchFailed(batchId, 0, "combine request rejected");
        }
    }

    function _cancelIfOpen(uint256 jobId, IJobManager.Terms calldata terms) private {
        if (_isOpen(jobId)) jobManager.cancelJob(jobId, terms);
    }

    /// @dev Marks the batch failed, releasing its combine reservation if still held.
    function _fail(uint256 batchId, Batch storage batch, uint256 jobId, string memory reason) private {
        if (batch.status == STATUS_MAPPING) reserved -= fee;
        batch.status = STATUS_FAILED;
        emit BatchFailed(batchId, jobId, reason);
    }
}
