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
- A transaction is `fatal` only when the chain says it would revert; any other RPC error while
  building it is an outage, retried with backoff (`MAX_BUILD_TRIES` times).
- `max_cost`: the most the transaction may cost in wei (the fee the job pays): its fee per gas is
  capped at `max_cost / gas`, so the oracle never pays more gas for a job than the job pays it.
- A replacement must raise both the tip and the max fee by the bump percentage; when the fee cap
  leaves no room for that, the transaction waits as it is rather than being refused as underpriced.
- A receipt counts once it is `receipt_depth` blocks deep; one that a reorg removes is sent again.
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

from bridge.chain import GWEI, eip1559_fees
from bridge.ledger import Ledger, Transaction, TxStatus

log = logging.getLogger(__name__)
MAX_BUILD_TRIES = 8  # transient RPC errors while estimating a transaction, then it is fatal


class TxManager:
    def __init__(
        self, w3: Web3, private_key: str, ledger: Ledger, *, max_fee_gwei: float = 500.0,
        priority_fee_gwei: float = 1.0, bump_after_blocks: int = 3, bump_percent: int = 20,
        gas_margin: float = 0.2, receipt_depth: int = 1,
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
        self._depth = max(1, receipt_depth)
        self.on_confirmed: Callable[[Transaction], None] | None = None

    # -- public ---------------------------------------------------------------------------------------
    def enqueue(self, idempotency_key: str, to: str, data: str, value: int = 0,
                max_cost: int | None = None) -> Transaction:
        """Record a transaction to send (or return the one already recorded under that key).
        `max_cost`: the most, in wei, that it may cost (gas × fee per gas)."""
        now = time.time()
        with self._ledger.session() as s:
            existing = s.scalars(select(Transaction).where(
                Transaction.idempotency_key == idempotency_key)).first()
            if existing is not None:
                return existing
            tx = Transaction(idempotency_key=idempotency_key, chain_id=self.chain_id,
                             sender=self.address, to=to, data=data, value=str(value),
                             status=TxStatus.UNSTARTED, bumps=0, all_hashes="",
                             max_cost=None if max_cost is None else str(max_cost),
                             not_before=0.0, tries=0, created_at=now, updated_at=now)
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
                Transaction.status == status, Transaction.not_before <= time.time())
                .order_by(Transaction.id).limit(200)))

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

    def _fees(self, tx: Transaction, previous: tuple[int, int] | None = None
              ) -> tuple[int, int] | None:
        """(max fee, tip) per gas for `tx`, within the fee cap and the transaction's own
        `max_cost`. For a replacement (`previous` set) both must rise by the bump percentage:
        None when the caps leave no room for that (a lower replacement would be refused)."""
        base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        cap = self._max_fee
        if tx.max_cost is not None and tx.gas:
            cap = min(cap, int(tx.max_cost) // tx.gas)
        max_fee, tip = eip1559_fees(base_fee, self._tip, cap)
        if previous is not None:
            factor = 100 + self._bump_percent
            tip = max(self._tip, previous[1] * factor // 100 + 1)
            max_fee = max(max_fee, previous[0] * factor // 100 + 1)
            if max_fee > cap or tip > max_fee:
                return None
        return max_fee, min(tip, max_fee)

    def _start(self, tx: Transaction) -> None:
        """Estimate, assign the nonce, sign, store, then broadcast."""
        call: dict[str, Any] = {"from": self.address, "to": tx.to, "data": tx.data,
                                "value": int(tx.value), "chainId": self.chain_id}
        try:
            estimate = self.w3.eth.estimate_gas(call)  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError, ValueError) as exc:
            if not _reverts(exc) and tx.tries + 1 < MAX_BUILD_TRIES:
                log.warning("tx %s: estimation failed (%s); retrying", tx.idempotency_key, exc)
                self._save(tx, tries=tx.tries + 1, error=f"estimation failed: {exc}"[:1000],
                           not_before=time.time() + min(2.0 ** tx.tries, 60.0))
                return
            log.warning("tx %s: estimation reverted, not sending: %s", tx.idempotency_key, exc)
            self._save(tx, status=TxStatus.FATAL, error=f"estimation reverted: {exc}"[:1000])
            self._confirmed(tx)
            return
        gas = int(estimate * (1 + self._gas_margin)) + 20_000
        tx.gas = gas
        fees = self._fees(tx)
        assert fees is not None
        max_fee, tip = fees
        nonce = self._next_nonce()
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
            elif "underpriced" in message or "less than block base fee" in message:
                # the fee cap is below what the chain asks now: keep waiting (sent again at
                # each check), never loop on the refusal
                log.warning("tx %s: refused at its fee cap (%s); waiting", tx.idempotency_key,
                            message[:200])
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
            mined = int(receipt["blockNumber"])
            if head - mined + 1 < self._depth:  # mined, not yet deep enough to count
                self._save(tx, mined_block=mined, sent_block=head)
                return
            self._save(tx, status=TxStatus.CONFIRMED, tx_hash=tx_hash,
                       succeeded=receipt["status"] == 1, mined_block=mined)
            self._confirmed(tx)
            return
        assert tx.nonce is not None and tx.sent_block is not None
        if tx.mined_block is not None:  # it was mined, and a reorg took it out: send it again
            log.warning("tx %s: its receipt vanished (reorg); sending it again", tx.idempotency_key)
            self._save(tx, mined_block=None, status=TxStatus.IN_PROGRESS)
            self._broadcast(tx)
            return
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
        fees = self._fees(tx, previous=previous)
        if fees is None:
            log.warning("tx %s: at its fee cap (%.2f gwei max fee), waiting as it is",
                        tx.idempotency_key, previous[0] / GWEI)
            self._broadcast(tx)  # the node may have dropped it (or refused it below the base fee)
            return
        max_fee, tip = fees
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


def _reverts(exc: Exception) -> bool:
    """Whether an estimation error is the chain saying the call would revert (not an outage)."""
    return isinstance(exc, ContractLogicError) or "revert" in str(exc).lower()


def calldata(contract_function: Any) -> str:
    """ABI-encoded call data of `contract.functions.f(args)`."""
    return str(contract_function._encode_transaction_data())


def checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))
