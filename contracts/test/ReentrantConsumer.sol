// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "../IJobConsumer.sol";
import {JobManager} from "../JobManager.sol";

/// @dev A malicious consumer that is also an authorised oracle (set by the test): it fulfils or
/// fails its own jobs, and from the callback tries to fulfil/fail the same job again and to
/// withdraw twice. Reports each attempt's revert data by event (no storage: `onJobFailed` runs
/// within `FAIL_CALLBACK_GAS_LIMIT`).
contract ReentrantConsumer is IJobConsumer {
    JobManager public immutable manager;

    event AttemptReverted(string attempt, bytes error);
    event WithdrawnInCallback(uint256 amount);

    constructor(JobManager manager_) {
        manager = manager_;
    }

    receive() external payable {}

    function request(string calldata spec) external payable returns (uint256) {
        return manager.requestJob{value: msg.value}(spec, address(this), 1_000_000);
    }

    function fulfil(uint256 jobId, string calldata cid) external {
        manager.fulfillJob(jobId, _hash(jobId), cid, 0);
    }

    function fail(uint256 jobId) external {
        manager.failJob(jobId, _hash(jobId), "nope");
    }

    function onJobResult(uint256 jobId, string calldata resultCid, uint8) external {
        _attack(jobId, resultCid);
    }

    function onJobFailed(uint256 jobId, string calldata) external {
        _attack(jobId, "bafyagain0");
    }

    function _hash(uint256 jobId) private view returns (bytes32) {
        return manager.getJob(jobId).requestHash;
    }

    function _attack(uint256 jobId, string memory cid) private {
        bytes32 requestHash = _hash(jobId);
        try manager.fulfillJob(jobId, requestHash, cid, 0) {} catch (bytes memory e) {
            emit AttemptReverted("refulfil", e);
        }
        try manager.failJob(jobId, requestHash, "again") {} catch (bytes memory e) {
            emit AttemptReverted("refail", e);
        }
        uint256 before = address(this).balance;
        manager.withdraw();
        emit WithdrawnInCallback(address(this).balance - before);
        try manager.withdraw() {} catch (bytes memory e) {
            emit AttemptReverted("second withdraw", e);
        }
    }
}
