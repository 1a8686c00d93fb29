// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "../IJobConsumer.sol";
import {JobManager} from "../JobManager.sol";

/// @dev A malicious consumer that is also an authorised oracle (set by the test): it fulfils or
/// fails its own jobs, and from the callback tries to fulfil/fail the same job again and to
/// withdraw twice. Records the revert data of each attempt.
contract ReentrantConsumer is IJobConsumer {
    JobManager public immutable manager;
    bytes public refulfilError;
    bytes public refailError;
    bytes public secondWithdrawError;
    uint256 public withdrawnInCallback;

    constructor(JobManager manager_) {
        manager = manager_;
    }

    receive() external payable {}

    function request(string calldata spec) external payable returns (uint256) {
        return manager.requestJob{value: msg.value}(spec, address(this), 1_000_000);
    }

    function fulfil(uint256 jobId, string calldata cid) external {
        manager.fulfillJob(jobId, cid, 0);
    }

    function fail(uint256 jobId) external {
        manager.failJob(jobId, "nope");
    }

    function onJobResult(uint256 jobId, string calldata resultCid, uint8) external {
        _attack(jobId, resultCid);
    }

    function onJobFailed(uint256 jobId, string calldata) external {
        _attack(jobId, "bafyagain0");
    }

    function _attack(uint256 jobId, string memory cid) private {
        try manager.fulfillJob(jobId, cid, 0) {} catch (bytes memory e) {
            refulfilError = e;
        }
        try manager.failJob(jobId, "again") {} catch (bytes memory e) {
            refailError = e;
        }
        uint256 before = address(this).balance;
        manager.withdraw();
        withdrawnInCallback = address(this).balance - before;
        try manager.withdraw() {} catch (bytes memory e) {
            secondWithdrawError = e;
        }
    }
}
