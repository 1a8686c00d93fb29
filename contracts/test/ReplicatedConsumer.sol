// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobManager} from "../IJobManager.sol";
import {JobConsumer} from "../JobConsumer.sol";

/// @dev A consumer that requests replicated jobs (`_requestJobWith`) and records what arrives.
contract ReplicatedConsumer is JobConsumer {
    string public lastResultCid;
    bytes public lastResult;
    uint256 public results;
    uint256 public failures;

    constructor(IJobManager jobManager_) JobConsumer(jobManager_) {}

    function request(string calldata spec, uint256 fee, uint32 callbackGasLimit, uint8 replicas)
        external
        returns (uint256)
    {
        return _requestJobWith(spec, fee, callbackGasLimit, IJobManager.Options(replicas, 0, new address[](0)));
    }

    function _onJobResult(uint256, string calldata resultCid, uint8, bytes calldata result) internal override {
        lastResultCid = resultCid;
        lastResult = result;
        ++results;
    }

    function _onJobFailed(uint256, string calldata) internal override {
        ++failures;
    }
}
