"""The transaction manager: one owner for one key's nonces, every transaction in the ledger.

States follow Chainlink's: `unstarted → in_progress → unconfirmed → confirmed` (or `fatal` when a
transaction cannot even be built, e.g. its gas estimation reverts — its nonce is then not used).

- A transaction is recorded under an idempotency key before anything is sent; asking again for the
  same key returns the same transaction: a result is never sent twice.
- The nonce is assigned and the signed transaction stored (`in_progress`) *before* it is broadcast,
  so a crash between the two is recovered by re-broadcasting the same bytes.
- A transaction not mined after `bump_after_blocks` is replaced (same nonce) with fees raised by
  `bump_percent`, up to the fee cap.
- "nonce too low" means one of our hashes was mined, or the nonce went elsewhere: we look at the
  receipts rather than retrying in a loop; "already known" means the node has it: fine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import func, select
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from bridge.ledger import Ledger, Transaction, TxStatus

log = logging.getLogger(__name__)
GWEI = 10**9


class TxManager:
    def __init__(
        self, w3: Web3, private_key: str, ledger: Ledger, *, max_fee_gwei: float = 500.0,
        priority_fee_gwei: float = 1.0, bump_after_blocks: int = 3, bump_percent: int = 20,
        gas_margin: float = 0.2,
    ) -> None:
        self.w3 = w3
        self.account: LocalAccount = Account.from_key(private_key)
        self.address = str(self.account.address)
        self.chain_id = w3.eth.chain_id
        self._ledger = ledger
        self._max_fee = int(max_fee_gwei * GWEI)
        self._tip = int(priority_fee_gwei * GWEI)
        self._bump_after = bump_after_blocks
        self._bump_percent = max(bump_percent, 11)  # nodes want ≥ 10% more to replace
        self._gas_margin = gas_margin
        self.on_confirmed: Callable[[Transaction], None] | None = None

    # -- public ---------------------------------------------------------------------------------------
    def enqueue(self, idempotency_key: str, to: str, data: str, value: int = 0) -> Transaction:
        """Record a transaction to send (or return the one already recorded under that key)."""
        now = time.time()
        with self._ledger.session() as s:
            existing = s.scalars(select(Transaction).where(
                Transaction.idempotency_key == idempotency_key)).first()
            if existing is not None:
                return existing
            tx = Transaction(idempotency_key=idempotency_key, chain_id=self.chain_id,
                             sender=self.address, to=to, data=data, value=str(value),
                             status=TxStatus.UNSTARTED, bumps=0, all_hashes="",
                             created_at=now, updated_at=now)
            s.add(tx)
            s.flush()
            return tx

    def get(self, tx_id: int) -> Transaction | None:
        with self._ledger.session() as s:
            return s.get(Transaction, tx_id)

    def pending_count(self) -> int:
        with self._ledger.session() as s:
            return int(s.scalar(select(func.count()).select_from(Transaction).where(
                Transaction.sender == self.address,
                Transaction.status.in_([TxStatus.UNSTARTED, TxStatus.IN_PROGRESS,
                                        TxStatus.UNCONFIRMED]))) or 0)

    def process(self) -> None:
        """One pass: re-broadcast in-progress ones, confirm or bump unconfirmed ones, send new ones."""
        for tx in self._in_state(TxStatus.IN_PROGRESS):
            self._broadcast(tx)
        head = self.w3.eth.block_number
        for tx in self._in_state(TxStatus.UNCONFIRMED):
            self._check(tx, head)
        for tx in self._in_state(TxStatus.UNSTARTED):
            self._start(tx)

    # -- steps ------------------------------------------------------------------------------------------
    def _in_state(self, status: TxStatus) -> list[Transaction]:
        with self._ledger.session() as s:
            return list(s.scalars(select(Transaction).where(
                Transaction.sender == self.address, Transaction.chain_id == self.chain_id,
                Transaction.status == status).order_by(Transaction.id).limit(200)))

    def _save(self, tx: Transaction, **fields: Any) -> None:
        with self._ledger.session() as s:
            stored = s.get(Transaction, tx.id)
            assert stored is not None
            for name, value in fields.items():
                setattr(stored, name, value)
                setattr(tx, name, value)
            stored.updated_at = time.time()

    def _next_nonce(self) -> int:
        with self._ledger.session() as s:
            highest = s.scalar(select(func.max(Transaction.nonce)).where(
                Transaction.sender == self.address, Transaction.chain_id == self.chain_id))
        on_chain = self.w3.eth.get_transaction_count(self.account.address, "pending")
        return max(on_chain, -1 if highest is None else int(highest) + 1)

    def _fees(self, bumps: int = 0, previous: tuple[int, int] | None = None) -> tuple[int, int]:
        base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        tip, max_fee = self._tip, 2 * base_fee + self._tip
        if previous is not None:  # a replacement must raise both by the bump percentage
            factor = 100 + self._bump_percent
            tip = max(tip, previous[1] * factor // 100 + 1)
            max_fee = max(max_fee, previous[0] * factor // 100 + 1)
        max_fee = min(max_fee, self._max_fee)
        return max_fee, min(tip, max_fee)

    def _start(self, tx: Transaction) -> None:
        """Estimate, assign the nonce, sign, store, then broadcast."""
        call: dict[str, Any] = {"from": self.address, "to": tx.to, "data": tx.data,
                                "value": int(tx.value), "chainId": self.chain_id}
        try:
            estimate = self.w3.eth.estimate_gas(call)  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            log.warning("tx %s: estimation reverted, not sending: %s", tx.idempotency_key, exc)
            self._save(tx, status=TxStatus.FATAL, error=f"estimation reverted: {exc}"[:1000])
            self._confirmed(tx)
            return
        max_fee, tip = self._fees()
        nonce = self._next_nonce()
        gas = int(estimate * (1 + self._gas_margin)) + 20_000
        raw, tx_hash = self._sign(call, nonce, gas, max_fee, tip)
        self._save(tx, status=TxStatus.IN_PROGRESS, nonce=nonce, gas=gas, max_fee=str(max_fee),
                   priority_fee=str(tip), raw=raw, tx_hash=tx_hash, all_hashes=tx_hash)
        self._broadcast(tx)

    def _sign(self, call: dict[str, Any], nonce: int, gas: int, max_fee: int, tip: int
              ) -> tuple[str, str]:
        signed = self.account.sign_transaction({
            **call, "nonce": nonce, "gas": gas, "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip, "type": 2,
        })
        return signed.raw_transaction.to_0x_hex(), signed.hash.to_0x_hex()

    def _broadcast(self, tx: Transaction) -> None:
        assert tx.raw is not None
        try:
            self.w3.eth.send_raw_transaction(HexBytes(tx.raw))
        except Web3RPCError as exc:
            message = str(exc).lower()
            if "already known" in message or "already imported" in message:
                pass  # the node has it: as good as sent
            elif "nonce too low" in message or "nonce has already been used" in message:
                # mined already (ours), or the nonce went to someone else: receipts will tell
                log.info("tx %s: nonce %s too low; checking receipts", tx.idempotency_key,
                         tx.nonce)
            else:
                raise
        self._save(tx, status=TxStatus.UNCONFIRMED, sent_block=self.w3.eth.block_number)

    def _check(self, tx: Transaction, head: int) -> None:
        for tx_hash in reversed(tx.hashes()):
            try:
                receipt = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                continue
            self._save(tx, status=TxStatus.CONFIRMED, tx_hash=tx_hash,
                       succeeded=receipt["status"] == 1,
                       mined_block=int(receipt["blockNumber"]))
            self._confirmed(tx)
            return
        assert tx.nonce is not None and tx.sent_block is not None
        if self.w3.eth.get_transaction_count(self.account.address, "latest") > tx.nonce:
            # the nonce is used but by none of our hashes (receipts may lag a block: wait one)
            if head - tx.sent_block > self._bump_after:
                self._save(tx, status=TxStatus.FATAL, error="nonce used by another transaction")
                self._confirmed(tx)
            return
        if head - tx.sent_block >= self._bump_after:
            self._bump(tx)

    def _bump(self, tx: Transaction) -> None:
        assert tx.nonce is not None and tx.gas is not None
        previous = (int(tx.max_fee or 0), int(tx.priority_fee or 0))
        max_fee, tip = self._fees(previous=previous)
        if (max_fee, tip) == previous:
            log.warning("tx %s: at the fee cap, cannot bump further", tx.idempotency_key)
            self._save(tx, sent_block=self.w3.eth.block_number)
            return
        call = {"from": self.address, "to": tx.to, "data": tx.data, "value": int(tx.value),
                "chainId": self.chain_id}
        raw, tx_hash = self._sign(call, tx.nonce, tx.gas, max_fee, tip)
        log.info("tx %s: not mined after %d blocks; replacing with max fee %.2f gwei",
                 tx.idempotency_key, self._bump_after, max_fee / GWEI)
        self._save(tx, status=TxStatus.IN_PROGRESS, raw=raw, tx_hash=tx_hash,
                   max_fee=str(max_fee), priority_fee=str(tip), bumps=tx.bumps + 1,
                   all_hashes=f"{tx.all_hashes},{tx_hash}")
        self._broadcast(tx)

    def _confirmed(self, tx: Transaction) -> None:
        if self.on_confirmed is not None:
            self.on_confirmed(tx)


def calldata(contract_function: Any) -> str:
    """ABI-encoded call data of `contract.functions.f(args)`."""
    return str(contract_function._encode_transaction_data())


def checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))
