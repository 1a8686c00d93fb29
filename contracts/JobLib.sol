// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobManager} from "./IJobManager.sol";

/// @title JobLib
/// @notice Helpers of `JobManager`: the packed job word, and the exact-gas consumer call.
/// @dev The job word (one storage slot per job), from the least significant bit:
/// bits 0..7 status, 8..47 leaseEnd (uint40), 48..79 claimer index (uint32), 80..87 flags,
/// 96..255 digest (bytes20: the terms digest while open, the result digest once completed).
library JobLib {
    /// @dev Flag: a replicated job completed and awaits `finalize` for its payouts.
    uint8 internal constant FLAG_SETTLE_PENDING = 1;

    /// @dev At most this many bytes of a failed callback's revert data are kept.
    uint256 internal constant MAX_CALLBACK_REASON_BYTES = 256;
    /// @dev Gas kept back, beyond the 63/64 rule, for the CALL itself and the work after it.
    uint256 internal constant CALLBACK_GAS_RESERVE = 10_000;

    function pack(bytes20 digest_, IJobManager.JobStatus status_, uint40 leaseEnd_, uint32 claimer_, uint8 flags_)
        internal
        pure
        returns (uint256)
    {
        return (uint256(uint160(digest_)) << 96) | (uint256(flags_) << 80) | (uint256(claimer_) << 48)
            | (uint256(leaseEnd_) << 8) | uint256(uint8(status_));
    }

    function digest(uint256 word) internal pure returns (bytes20) {
        return bytes20(uint160(word >> 96));
    }

    function status(uint256 word) internal pure returns (IJobManager.JobStatus) {
        return IJobManager.JobStatus(uint8(word));
    }

    function leaseEnd(uint256 word) internal pure returns (uint40) {
        return uint40(word >> 8);
    }

    function claimer(uint256 word) internal pure returns (uint32) {
        return uint32(word >> 48);
    }

    function flags(uint256 word) internal pure returns (uint8) {
        return uint8(word >> 80);
    }

    /// @dev `bytes20(keccak256(abi.encode(terms)))`. `Terms` is a static struct, so its calldata
    /// encoding is its ABI encoding: hashed in place (dirty high bits, which `abi.encode` would
    /// clean, only make the digest differ, i.e. the call is refused).
    function hashTerms(IJobManager.Terms calldata terms) internal pure returns (bytes20 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, terms, 288)
            h := and(keccak256(p, 288), not(0xffffffffffffffffffffffff))
        }
    }

    /// @dev `bytes20(keccak256(abi.encode(resultCid, exitCode, result)))`.
    function hashResult(string calldata resultCid, uint8 exitCode, bytes calldata result)
        internal
        pure
        returns (bytes20)
    {
        return bytes20(keccak256(abi.encode(resultCid, exitCode, result)));
    }

    /// @dev Whether a call with exactly `gasLimit` gas can still be made from here (with `extra`
    /// gas of work before it), by the rule `callConsumer` applies.
    function enoughGasFor(uint256 gasLimit, uint256 extra) internal view returns (bool) {
        uint256 g = gasleft();
        if (g < CALLBACK_GAS_RESERVE + extra) return false;
        g -= CALLBACK_GAS_RESERVE + extra;
        return g - g / 64 > gasLimit;
    }

    /// @dev Calls `consumer` with exactly `gasLimit` gas (Chainlink's `_callWithExactGas`): the
    /// 63/64 rule must still leave `gasLimit` after `CALLBACK_GAS_RESERVE`, else the whole
    /// transaction reverts, so a caller cannot starve a callback into failing. Return data is not
    /// copied on success and copied up to `MAX_CALLBACK_REASON_BYTES` on failure. A consumer with
    /// no code gets no call: `CallbackFailed` with `JobManagerConsumerNotContract(consumer)`.
    function callConsumer(uint256 jobId, address consumer, uint256 gasLimit, bytes memory payload) internal {
        if (consumer.code.length == 0) {
            emit IJobManager.CallbackFailed(
                jobId, abi.encodeWithSelector(IJobManager.JobManagerConsumerNotContract.selector, consumer)
            );
            return;
        }
        bool enoughGas;
        bool success;
        assembly ("memory-safe") {
            let g := gas()
            if gt(g, CALLBACK_GAS_RESERVE) {
                g := sub(g, CALLBACK_GAS_RESERVE)
                if gt(sub(g, div(g, 64)), gasLimit) {
                    enoughGas := 1
                    success := call(gasLimit, consumer, 0, add(payload, 0x20), mload(payload), 0, 0)
                }
            }
        }
        if (!enoughGas) revert IJobManager.InsufficientGasForCallback(jobId, gasLimit);
        if (success) return;

        bytes memory reason;
        assembly ("memory-safe") {
            let size := returndatasize()
            if gt(size, MAX_CALLBACK_REASON_BYTES) { size := MAX_CALLBACK_REASON_BYTES }
            reason := mload(0x40)
            mstore(reason, size)
            returndatacopy(add(reason, 0x20), 0, size)
            mstore(0x40, add(add(reason, 0x20), and(add(size, 31), not(31))))
        }
        emit IJobManager.CallbackFailed(jobId, reason);
    }
}
