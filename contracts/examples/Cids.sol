// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Cids
/// @notice Plausibility check for CIDs spliced into job specs on-chain.
/// @dev Specs are JSON built off-chain; contracts only splice CIDs between a fixed prefix and
/// suffix. Accepting only [A-Za-z0-9] (base32/base58 CIDs) of sane length rules out JSON
/// injection (no quotes, backslashes, braces or control bytes can get in).
library Cids {
    uint256 internal constant MIN_LENGTH = 10;
    uint256 internal constant MAX_LENGTH = 100;

    /// @dev True when `cid` is MIN_LENGTH..MAX_LENGTH bytes of [A-Za-z0-9].
    function isPlausible(string memory cid) internal pure returns (bool) {
        bytes memory b = bytes(cid);
        if (b.length < MIN_LENGTH || b.length > MAX_LENGTH) return false;
        for (uint256 i = 0; i < b.length; ++i) {
            bytes1 c = b[i];
            bool ok = (c >= "0" && c <= "9") || (c >= "A" && c <= "Z") || (c >= "a" && c <= "z");
            if (!ok) return false;
        }
        return true;
    }
}
