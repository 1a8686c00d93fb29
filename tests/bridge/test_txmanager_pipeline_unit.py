"""The pipelined transaction manager on a fake node (a JSON-RPC provider with a mempool, mined by
hand): many transactions in flight on consecutive nonces, a reverting one costs no nonce and holds
no one back, one the node refuses is sent again alone, a crash between signing and sending is
recovered by re-sending the same bytes, and a stuck one is replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.providers.base import BaseProvider

from bridge.ledger import TxStatus
from bridge.txmanager import TxManager
from tests.bridge.fakes import new_ledger

KEY = "0x" + "11" * 32
ADDRESS = Account.from_key(KEY).address
REVERTS = "0xdead"  # calldata the fake node says would revert
REFUSED = "0xbeef"  # calldata the fake node refuses to take (an unexpected error)


class FakeNode(BaseProvider):
    """Enough of a node: estimates, a mempool of signed transactions, receipts once mined."""

    def __init__(self) -> None:
        super().__init__()
        self.head = 10
        self.mined_nonce = 0  # transactions of ours mined so far
        self.pool: dict[str, str] = {}  # hash → raw, not mined
        self.receipts: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.refuse: set[str] = set()  # raw transactions refused (as an unexpected error)

    def make_request(self, method: Any, params: Any) -> Any:
        self.calls.append(str(method))
        answer = getattr(self, "rpc_" + str(method))(*params)
        if isinstance(answer, dict) and "error" in answer:
            return {"jsonrpc": "2.0", "id": 1, "error": answer["error"]}
        return {"jsonrpc": "2.0", "id": 1, "result": answer}

    def rpc_eth_chainId(self) -> str:
        return hex(31337)

    def rpc_eth_blockNumber(self) -> str:
        return hex(self.head)

    def rpc_eth_getBlockByNumber(self, _tag: str, _full: bool) -> dict[str, Any]:
        return {"number": hex(self.head), "baseFeePerGas": hex(10**9), "timestamp": hex(0)}

    def rpc_eth_getTransactionCount(self, _address: str, tag: str) -> str:
        pending = len(self.pool) if tag == "pending" else 0
        return hex(self.mined_nonce + pending)

    def rpc_eth_estimateGas(self, call: dict[str, Any]) -> Any:
        if call["data"] == REVERTS:
            return {"error": {"code": 3, "message": "execution reverted: JobManagerRejected"}}
        return hex(30_000)

    def rpc_eth_sendRawTransaction(self, raw: str) -> Any:
        if raw in self.refuse:
            return {"error": {"code": -32000, "message": "insufficient funds for gas"}}
        tx_hash = Web3.keccak(hexstr=raw).to_0x_hex()
        if tx_hash in self.pool or tx_hash in self.receipts:
            return {"error": {"code": -32000, "message": "already known"}}
        self.pool[tx_hash] = raw
        return tx_hash

    def rpc_eth_getTransactionReceipt(self, tx_hash: str) -> Any:
        return self.receipts.get(tx_hash)

    def mine(self) -> None:
        """Mine every pooled transaction in one block."""
        self.head += 1
        for tx_hash in list(self.pool):
            self.receipts[tx_hash] = {"blockNumber": hex(self.head), "status": "0x1",
                                      "transactionHash": tx_hash}
            self.mined_nonce += 1
        self.pool.clear()


def manager(tmp_path: Path, node: FakeNode, **kwargs: Any) -> TxManager:
    return TxManager(Web3(node), KEY, new_ledger(tmp_path), **kwargs)


def test_many_transactions_go_out_together_on_consecutive_nonces(tmp_path: Path) -> None:
    node = FakeNode()
    txm = manager(tmp_path, node)
    txs = [txm.enqueue(f"k{i}", ADDRESS, "0x") for i in range(5)]

    txm.process()

    sent = [txm.get(tx.id) for tx in txs]
    assert [tx.nonce for tx in sent if tx] == [0, 1, 2, 3, 4]
    assert {tx.status for tx in sent if tx} == {TxStatus.UNCONFIRMED}
    assert len(node.pool) == 5  # all in flight at once, none waited for another's receipt
    node.mine()
    txm.process()
    assert {tx.status for tx in txm.get_many([tx.id for tx in txs]).values()} == {
        TxStatus.CONFIRMED}


def test_a_reverting_transaction_uses_no_nonce_and_holds_no_one_back(tmp_path: Path) -> None:
    node = FakeNode()
    txm = manager(tmp_path, node)
    first = txm.enqueue("a", ADDRESS, "0x")
    bad = txm.enqueue("bad", ADDRESS, REVERTS)
    last = txm.enqueue("b", ADDRESS, "0x")

    txm.process()

    got = txm.get_many([first.id, bad.id, last.id])
    assert got[bad.id].status == TxStatus.FATAL and got[bad.id].nonce is None
    assert "estimation reverted" in (got[bad.id].error or "")
    assert (got[first.id].nonce, got[last.id].nonce) == (0, 1)  # no gap left by the bad one


def test_a_refused_broadcast_is_sent_again_alone(tmp_path: Path) -> None:
    node = FakeNode()
    txm = manager(tmp_path, node)
    txs = [txm.enqueue(f"k{i}", ADDRESS, "0x") for i in range(3)]
    txm.process()
    node.pool.clear()  # the node lost them: pretend the middle one was refused instead
    middle = txm.get(txs[1].id)
    assert middle is not None and middle.raw is not None
    node.refuse.add(middle.raw)
    txm._save(middle, status=TxStatus.IN_PROGRESS)

    txm.process()
    assert (got := txm.get(middle.id)) is not None and got.status == TxStatus.IN_PROGRESS
    assert "insufficient funds" in (got.error or "")
    node.refuse.clear()
    txm.process()
    assert (got := txm.get(middle.id)) is not None and got.status == TxStatus.UNCONFIRMED


def test_a_crash_between_signing_and_sending_resends_the_same_bytes(tmp_path: Path) -> None:
    node = FakeNode()
    txm = manager(tmp_path, node)
    tx = txm.enqueue("k", ADDRESS, "0x")
    txm.process()
    signed = txm.get(tx.id)
    assert signed is not None
    node.pool.clear()  # as if the broadcast never happened
    txm._save(signed, status=TxStatus.IN_PROGRESS)

    again = TxManager(Web3(node), KEY, txm._ledger)  # a restart
    again.process()

    assert list(node.pool) == [signed.tx_hash]  # the very same transaction
    node.mine()
    again.process()
    done = again.get(tx.id)
    assert done is not None and done.status == TxStatus.CONFIRMED and done.nonce == 0


def test_a_stuck_transaction_is_replaced_on_its_nonce(tmp_path: Path) -> None:
    node = FakeNode()
    txm = manager(tmp_path, node, bump_after_blocks=2)
    tx = txm.enqueue("k", ADDRESS, "0x")
    txm.process()
    first = txm.get(tx.id)
    assert first is not None
    node.head += 3  # blocks go by without it

    txm.process()

    bumped = txm.get(tx.id)
    assert bumped is not None and bumped.bumps == 1 and bumped.nonce == first.nonce
    assert int(bumped.max_fee or 0) > int(first.max_fee or 0)
    assert bumped.hashes() == [first.tx_hash, bumped.tx_hash]
    node.mine()
    txm.process()
    done = txm.get(tx.id)
    assert done is not None and done.status == TxStatus.CONFIRMED
