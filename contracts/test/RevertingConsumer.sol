// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "../IJobConsumer.sol";

/// @dev Reverts in both callbacks: with a custom error on results, with a string on failures.
contract RevertingConsumer is IJobConsumer {
    error RevertingConsumerRefused(uint256 jobId);

    function onJobResult(uint256 jobId, string calldata, uint8, bytes calldata) external pure {
        revert RevertingConsumerRefused(jobId);
    }

    function onJobFailed(uint256, string calldata) external pure {
        revert("RevertingConsumer: no");
    }
}
