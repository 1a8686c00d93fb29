// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobConsumer} from "../IJobConsumer.sol";

/// @dev Returns (results) or reverts with (failures) `size` bytes of 0xab, to check the
/// JobManager never copies unbounded return data.
contract HugeDataConsumer is IJobConsumer {
    uint256 public immutable size;

    constructor(uint256 size_) {
        size = size_;
    }

    function onJobResult(uint256, string calldata, uint8, bytes calldata) external view {
        uint256 n = size;
        assembly ("memory-safe") {
            let p := mload(0x40)
            for { let i := 0 } lt(i, n) { i := add(i, 32) } { mstore(add(p, i), 0xabababababababababababababababababababababababababababababababab) }
            return(p, n)
        }
    }

    function onJobFailed(uint256, string calldata) external view {
        uint256 n = size;
        assembly ("memory-safe") {
            let p := mload(0x40)
            for { let i := 0 } lt(i, n) { i := add(i, 32) } { mstore(add(p, i), 0xabababababababababababababababababababababababababababababababab) }
            revert(p, n)
        }
    }
}
