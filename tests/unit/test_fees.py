"""The one EIP-1559 fee rule (`TxSender` and `TxManager` both use it)."""

from __future__ import annotations

from bridge.chain import GWEI, eip1559_fees


def test_max_fee_is_twice_the_base_fee_plus_the_tip() -> None:
    assert eip1559_fees(10 * GWEI, 1 * GWEI, 500 * GWEI) == (21 * GWEI, 1 * GWEI)


def test_the_cap_bounds_the_max_fee_and_the_tip() -> None:
    assert eip1559_fees(300 * GWEI, 1 * GWEI, 500 * GWEI) == (500 * GWEI, 1 * GWEI)
    assert eip1559_fees(0, 5 * GWEI, 3 * GWEI) == (3 * GWEI, 3 * GWEI)  # never a tip above the max fee
