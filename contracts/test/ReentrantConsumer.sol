// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "../IJobConsumer.sol";
import {IJobManager} from "../IJobManager.sol";
import {JobManager} from "../JobManager.sol";

/// @dev A malicious consumer that is also a registered operator: it claims and fulfils or fails
/// its own jobs, and from the callback tries to fulfil/fail the same job again and to withdraw
/// twice. Reports each attempt's revert data by event (no storage: `onJobFailed` runs within
/// `FAIL_CALLBACK_GAS_LIMIT`). The terms of the job in flight are kept for the attack.
contract ReentrantConsumer is IJobConsumer {
    JobManager public immutable manager;
    IJobManager.Terms private _terms;

    event AttemptReverted(string attempt, bytes error);
    event WithdrawnInCallback(uint256 amount);

    constructor(JobManager manager_) {
        manager = manager_;
    }

    receive() external payable {}

    function register() external payable {
        manager.registerOperator{value: msg.value}();
    }

    function request(string calldata spec) external payable returns (uint256) {
        return manager.requestJob{value: msg.value}(spec, address(this), 1_000_000);
    }

    function claim(uint256 jobId, IJobManager.Terms calldata terms) external {
        _terms = terms;
        manager.claimJob(jobId, terms);
    }

    function fulfil(uint256 jobId, string calldata cid) external {
        manager.fulfillJob(jobId, _terms, cid, 0, "");
    }

    function fail(uint256 jobId) external {
        manager.failJob(jobId, _terms, "nope");
    }

    function onJobResult(uint256 jobId, string calldata resultCid, uint8, bytes calldata) external {
        _attack(jobId, resultCid);
    }

    function onJobFailed(uint256 jobId, string calldata) external {
        _attack(jobId, "bafyagain0");
    }

    function _attack(uint256 jobId, string memory cid) private {
        IJobManager.Terms memory terms = _terms;
        try manager.fulfillJob(jobId, terms, cid, 0, "") {} catch (bytes memory e) {
            emit AttemptReverted("refulfil", e);
        }
        try manager.failJob(jobId, terms, "again") {} catch (bytes memory e) {
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
