// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IJobManager} from "../IJobManager.sol";
import {JobConsumer} from "../JobConsumer.sol";
import {Cids} from "./Cids.sol";

/// @title WordCount
/// @notice The smallest useful cod consumer: its owner asks for the words of a text on IPFS to be
/// counted; the result CID and exit code arrive in the callback and are kept per job.
/// @dev The spec is `specPrefix + cid + specSuffix`, rendered off-chain from a `JobSpec`; only a
/// CID that passes `Cids.isPlausible` is spliced in. Fees come from this contract's balance;
/// refunds of failed or cancelled (`cancel`) jobs come back with `claimRefunds`, and the owner takes the
/// balance out with `withdrawFunds`. `JobConsumer` lets only this contract's own pending jobs
/// reach the hooks: a job someone else requests naming this contract is refused.
contract WordCount is JobConsumer, Ownable {
    struct Result {
        bool done;
        bool failed;
        uint8 exitCode;
        string resultCid; // the result directory: stdout, stderr, exitCode, outputs/count
        bytes result; // the small on-chain result (e.g. the count itself), at most 256 bytes
    }

    uint256 public immutable fee;
    uint32 public immutable callbackGasLimit;
    string public specPrefix;
    string public specSuffix;
    mapping(uint256 jobId => Result) public results;

    error WordCountInvalidCid(string cid);
    error WordCountSendFailed(address to, uint256 amount);

    event WordCountRequested(uint256 indexed jobId, string inputCid);
    event WordCountCompleted(uint256 indexed jobId, string resultCid, uint8 exitCode);
    event WordCountFailed(uint256 indexed jobId, string reason);

    constructor(IJobManager jobManager_, string memory specPrefix_, string memory specSuffix_, uint256 fee_,
        uint32 callbackGasLimit_) JobConsumer(jobManager_) Ownable(msg.sender) {
        specPrefix = specPrefix_;
        specSuffix = specSuffix_;
        fee = fee_;
        callbackGasLimit = callbackGasLimit_;
    }

    /// @notice Requests a word count of the text at `inputCid`, paying `fee` from this contract.
    function count(string calldata inputCid) external payable onlyOwner returns (uint256 jobId) {
        if (!Cids.isPlausible(inputCid)) revert WordCountInvalidCid(inputCid);
        jobId = _requestJob(string.concat(specPrefix, inputCid, specSuffix), fee, callbackGasLimit);
        emit WordCountRequested(jobId, inputCid);
    }

    /// @notice Cancels `jobId` once its deadline has passed; its fee becomes claimable (`claimRefunds`).
    /// @param terms The job's terms, from its `JobRequested` event.
    function cancel(uint256 jobId, IJobManager.Terms calldata terms) external onlyOwner {
        jobManager.cancelJob(jobId, terms);
    }

    /// @notice Sends `amount` of this contract's balance to `to`.
    function withdrawFunds(address payable to, uint256 amount) external onlyOwner {
        (bool sent,) = to.call{value: amount}("");
        if (!sent) revert WordCountSendFailed(to, amount);
    }

    function _onJobResult(uint256 jobId, string calldata resultCid, uint8 exitCode, bytes calldata small)
        internal
        override
    {
        Result storage result = results[jobId];
        result.done = true;
        result.exitCode = exitCode;
        result.resultCid = resultCid;
        if (small.length != 0) result.result = small;
        emit WordCountCompleted(jobId, resultCid, exitCode);
    }

    function _onJobFailed(uint256 jobId, string calldata reason) internal override {
        Result storage result = results[jobId];
        result.done = true;
        result.failed = true;
        emit WordCountFailed(jobId, reason);
    }
}
