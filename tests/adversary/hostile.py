"""What a hostile requester sends: raw request bytes no honest client would build, and floods."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_account import Account
from web3 import Web3

from devstack.stack import dev_key
from protocol.spec import JobSpec
from tests.e2e.client import Requester

ZERO = "0x" + "0" * 40
REQUEST_SELECTOR = Web3.keccak(text="requestJob(string,address,uint32)")[:4]
ATTACKER_KEY_INDEX = 7  # an anvil dev account of its own: no nonce shared with the tests' users


def request_raw(requester: Requester, spec: bytes, consumer: str = ZERO, gas: int = 0) -> int:
    """Request a job whose spec is arbitrary bytes (a `string` on-chain is not checked to be
    UTF-8: the ABI layout of `bytes` is the same); returns the job id, read from the log's topic
    (web3's own decoder would raise on such a spec)."""
    data = REQUEST_SELECTOR + encode(["bytes", "address", "uint32"], [spec, consumer, gas])
    fee = int(requester.manager.functions.minFee().call())
    receipt = requester.sender.send({"to": requester.manager.address, "data": Web3.to_hex(data),
                                     "value": fee})
    assert not isinstance(receipt, str) and receipt["status"] == 1
    (log,) = [entry for entry in receipt["logs"] if entry["address"] == requester.manager.address]
    return int.from_bytes(log["topics"][1], "big")


class Flood:
    """Sends many requests from the attacker's own key without waiting for receipts."""

    def __init__(self, requester: Requester, key_index: int = ATTACKER_KEY_INDEX) -> None:
        self.w3 = requester.w3
        self.manager = requester.manager
        self.account = Account.from_key(dev_key(key_index))
        self.nonce = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
        self.fee = int(self.manager.functions.minFee().call())
        self.chain_id = int(self.w3.eth.chain_id)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def send(self, spec: JobSpec | str, count: int) -> list[str]:
        text = spec if isinstance(spec, str) else spec.to_json()
        data = self.manager.functions.requestJob(text, ZERO, 0)._encode_transaction_data()
        base = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        hashes = []
        for _ in range(count):
            tx = {"to": self.manager.address, "data": data, "value": self.fee, "gas": 500_000,
                  "maxFeePerGas": 4 * base + 10**9, "maxPriorityFeePerGas": 10**9,
                  "nonce": self.nonce, "chainId": self.chain_id, "type": 2}
            signed = self.account.sign_transaction(tx)
            hashes.append(self.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex())
            self.nonce += 1
        return hashes

    def wait_mined(self, hashes: list[str], timeout: float = 120.0) -> None:
        for tx_hash in hashes[-1:]:  # nonces are in order: the last mined means all are
            self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)  # type: ignore[arg-type]
