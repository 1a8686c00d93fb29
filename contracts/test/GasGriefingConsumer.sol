// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "../IJobConsumer.sol";

/// @dev Burns all the gas it is given in both callbacks.
contract GasGriefingConsumer is IJobConsumer {
    uint256 public counter;

    function onJobResult(uint256, string calldata, uint8, bytes calldata) external {
        while (true) {
            ++counter;
        }
    }

    function onJobFailed(uint256, string calldata) external {
        while (true) {
            ++counter;
        }
    }
}
