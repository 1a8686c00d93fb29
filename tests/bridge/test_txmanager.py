"""The transaction manager against a real anvil: idempotency, replacement of a stuck transaction,
no loop on "nonce too low", and no nonce burnt by a transaction that cannot be built."""

from __future__ import annotations

from pathlib import Path

from bridge.ledger import Ledger, TxStatus
from bridge.terms import Terms
from bridge.txmanager import TxManager, calldata
from tests.services import Chain

ZERO = "0x" + "0" * 40
# the oracle key registered as an operator when the chain started (v2): its nonces start here
REGISTERED = 1


def manager(chain: Chain, tmp_path: Path, **kwargs: object) -> TxManager:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    return TxManager(chain.w3, chain.oracle_key, ledger, **kwargs)  # type: ignore[arg-type]



def test_same_idempotency_key_sends_once(chain: Chain, tmp_path: Path) -> None:
    txm = manager(chain, tmp_path)
    first = txm.enqueue("k1", txm.address, "0x")
    again = txm.enqueue("k1", txm.address, "0x")
    assert first.id == again.id
    txm.process()
    txm.process()
    tx = txm.get(first.id)
    assert tx is not None and tx.status == TxStatus.CONFIRMED and tx.succeeded
    assert chain.w3.eth.get_transaction_count(txm.account.address) == REGISTERED + 1


def test_stuck_transaction_is_replaced_with_higher_fees(chain: Chain, tmp_path: Path) -> None:
    txm = manager(chain, tmp_path, bump_after_blocks=2, max_fee_gwei=1000)
    chain.rpc("evm_setAutomine", False)
    tx = txm.enqueue("stuck", txm.address, "0x")
    txm.process()  # signed and sent with maxFee = 2 × baseFee + tip
    sent = txm.get(tx.id)
    assert sent is not None and sent.status == TxStatus.UNCONFIRMED
    # the base fee jumps above what the transaction offers: it cannot be mined
    for _ in range(3):
        chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(int(sent.max_fee or 0) * 3))
        chain.mine()
        txm.process()
    chain.rpc("evm_setAutomine", True)
    chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(int(sent.max_fee or 0)))
    chain.mine()
    txm.process()
    done = txm.get(tx.id)
    assert done is not None
    assert done.bumps >= 1
    assert done.status == TxStatus.CONFIRMED and done.succeeded
    assert done.tx_hash != sent.tx_hash and done.tx_hash in done.hashes()
    assert int(done.max_fee or 0) > int(sent.max_fee or 0)
    assert chain.w3.eth.get_transaction_count(txm.account.address) == REGISTERED + 1  # one nonce used


def test_rebroadcast_of_a_mined_transaction_does_not_loop(chain: Chain, tmp_path: Path) -> None:
    txm = manager(chain, tmp_path)
    tx = txm.enqueue("once", txm.address, "0x")
    txm.process()  # sends
    txm.process()  # confirms
    mined = txm.get(tx.id)
    assert mined is not None and mined.status == TxStatus.CONFIRMED
    # a crash right after signing would leave it in_progress: re-broadcasting hits "nonce too low"
    txm._save(mined, status=TxStatus.IN_PROGRESS)
    txm.process()
    txm.process()
    again = txm.get(tx.id)
    assert again is not None and again.status == TxStatus.CONFIRMED and again.succeeded
    assert chain.w3.eth.get_transaction_count(txm.account.address) == REGISTERED + 1


def test_reverting_call_is_fatal_and_burns_no_nonce(chain: Chain, tmp_path: Path) -> None:
    txm = manager(chain, tmp_path)
    # fulfilling a job that does not exist reverts at estimation
    nothing = Terms(ZERO, ZERO, 0, 0, 0, 1, 0, False, bytes(32))
    bad = txm.enqueue("bad", str(chain.manager.address), calldata(
        chain.manager.functions.fulfillJob(999, nothing.as_tuple(), "bafyx", 0, b"")))
    good = txm.enqueue("good", txm.address, "0x")
    txm.process()
    txm.process()
    bad_tx, good_tx = txm.get(bad.id), txm.get(good.id)
    assert bad_tx is not None and bad_tx.status == TxStatus.FATAL
    assert "estimation reverted" in (bad_tx.error or "")
    assert bad_tx.nonce is None
    assert good_tx is not None and good_tx.status == TxStatus.CONFIRMED
    assert good_tx.nonce == REGISTERED
