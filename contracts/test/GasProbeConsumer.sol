// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "../IJobConsumer.sol";

/// @dev Records `gasleft()` as the very first thing in each callback (no storage reads before).
contract GasProbeConsumer is IJobConsumer {
    uint256 public gasAtEntry;

    function onJobResult(uint256, string calldata, uint8, bytes calldata) external {
        gasAtEntry = gasleft();
    }

    function onJobFailed(uint256, string calldata) external {
        gasAtEntry = gasleft();
    }
}
