// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobManager} from "../IJobManager.sol";
import {JobManager} from "../JobManager.sol";

/// @dev A requester contract whose `receive` accepts, reverts, or re-enters `withdraw`.
contract ContractRequester {
    enum Mode {
        Accept,
        Revert,
        Reenter,
        ReenterTo
    }

    JobManager public immutable manager;
    Mode public mode;
    bytes public reentryError;
    uint256 public received;

    constructor(JobManager manager_) {
        manager = manager_;
    }

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    function request(string calldata spec) external payable returns (uint256) {
        return manager.requestJob{value: msg.value}(spec, address(0), 0);
    }

    function cancel(uint256 jobId, IJobManager.Terms calldata terms) external {
        manager.cancelJob(jobId, terms);
    }

    function withdraw() external {
        manager.withdraw();
    }

    function withdrawTo(address payable to) external {
        manager.withdrawTo(to);
    }

    receive() external payable {
        if (mode == Mode.Revert) revert("ContractRequester: rejected");
        if (mode == Mode.Reenter) {
            try manager.withdraw() {} catch (bytes memory e) {
                reentryError = e;
            }
        } else if (mode == Mode.ReenterTo) {
            try manager.withdrawTo(payable(address(this))) {} catch (bytes memory e) {
                reentryError = e;
            }
        }
        received += msg.value;
    }
}
