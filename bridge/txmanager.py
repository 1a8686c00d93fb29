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

from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import EncodingError
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from sqlalchemy import func, select
from web3 import Web3
from web3.exceptions import ContractLogicError

from bridge.chain import GWEI, RpcError, eip1559_fees, rpc_batch
from bridge.ledger import Ledger, Transaction, TxStatus

log = logging.getLogger(__name__)
MAX_BUILD_TRIES = 8  # transient RPC errors while estimating a transaction, then it is fatal
PASS_MAX = 500  # transactions per state per pass


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

    def get_many(self, tx_ids: list[int]) -> dict[int, Transaction]:
        """The transactions `tx_ids` (those that exist), read in one query."""
        if not tx_ids:
            return {}
        with self._ledger.session() as s:
            return {tx.id: tx for tx in s.scalars(select(Transaction).where(
                Transaction.id.in_(sorted(set(tx_ids)))))}

    def process(self) -> None:
        """One pass: re-broadcast in-progress ones, confirm or bump unconfirmed ones, send new ones.

        Pipelined: each step handles every transaction in its state at once, with one JSON-RPC
        batch per kind of call (receipts, estimations, raw sends) and one ledger transaction per
        step; new transactions take consecutive nonces and many stay in flight together."""
        self._broadcast(self._in_state(TxStatus.IN_PROGRESS))
        unconfirmed = self._in_state(TxStatus.UNCONFIRMED)
        head, base_fee, mined_nonce = self._chain_state(bool(unconfirmed))
        self._check(unconfirmed, head, base_fee, mined_nonce)
        self._start(self._in_state(TxStatus.UNSTARTED), base_fee)

    # -- steps ------------------------------------------------------------------------------------------
    def _in_state(self, status: TxStatus) -> list[Transaction]:
        with self._ledger.session() as s:
            return list(s.scalars(select(Transaction).where(
                Transaction.sender == self.address, Transaction.chain_id == self.chain_id,
                Transaction.status == status, Transaction.not_before <= time.time())
                .order_by(Transaction.id).limit(PASS_MAX)))

    def _chain_state(self, with_nonce: bool) -> tuple[int, int, int]:
        """(head, latest base fee, our mined nonce count) in one JSON-RPC batch."""
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False])]
        if with_nonce:
            calls.append(("eth_getTransactionCount", [self.address, "latest"]))
        answers = _raise_errors(rpc_batch(self.w3, calls))
        block = answers[0]
        mined = _int(answers[1]) if with_nonce else 0
        return _int(block["number"]), _int(block.get("baseFeePerGas") or 0), mined

    def _save(self, tx: Transaction, **fields: Any) -> None:
        self._save_many([(tx, fields)])

    def _save_many(self, updates: list[tuple[Transaction, dict[str, Any]]]) -> None:
        """Write the fields of many transactions (and on the objects) in one ledger transaction."""
        if not updates:
            return
        now = time.time()
        with self._ledger.session() as s:
            for tx, fields in updates:
                stored = s.get(Transaction, tx.id)
                assert stored is not None
                for name, value in fields.items():
                    setattr(stored, name, value)
                    setattr(tx, name, value)
                stored.updated_at = now

    def _next_nonce(self) -> int:
        with self._ledger.session() as s:
            highest = s.scalar(select(func.max(Transaction.nonce)).where(
                Transaction.sender == self.address, Transaction.chain_id == self.chain_id))
        on_chain = self.w3.eth.get_transaction_count(self.account.address, "pending")
        return max(on_chain, -1 if highest is None else int(highest) + 1)

    def _fees(self, tx: Transaction, base_fee: int, previous: tuple[int, int] | None = None
              ) -> tuple[int, int] | None:
        """(max fee, tip) per gas for `tx`, within the fee cap and the transaction's own
        `max_cost`. For a replacement (`previous` set) both must rise by the bump percentage:
        None when the caps leave no room for that (a lower replacement would be refused)."""
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

    def _call(self, tx: Transaction) -> dict[str, Any]:
        return {"from": self.address, "to": tx.to, "data": tx.data, "value": int(tx.value),
                "chainId": self.chain_id}

    def _start(self, txs: list[Transaction], base_fee: int) -> None:
        """Estimate all (one batch), assign consecutive nonces, sign, store, then broadcast all."""
        if not txs:
            return
        estimates = rpc_batch(self.w3, [("eth_estimateGas", [_rpc_call(self._call(tx))])
                                        for tx in txs])
        failed: list[tuple[Transaction, dict[str, Any]]] = []
        built: list[tuple[Transaction, dict[str, Any]]] = []
        nonce: int | None = None
        for tx, estimate in zip(txs, estimates, strict=True):
            if isinstance(estimate, RpcError):
                failed.append((tx, self._estimation_failed(tx, estimate)))
                continue
            if nonce is None:  # one read per pass, then consecutive
                nonce = self._next_nonce()
            gas = int(_int(estimate) * (1 + self._gas_margin)) + 20_000
            tx.gas = gas
            fees = self._fees(tx, base_fee)
            assert fees is not None
            max_fee, tip = fees
            raw, tx_hash = self._sign(self._call(tx), nonce, gas, max_fee, tip)
            built.append((tx, {"status": TxStatus.IN_PROGRESS, "nonce": nonce, "gas": gas,
                               "max_fee": str(max_fee), "priority_fee": str(tip), "raw": raw,
                               "tx_hash": tx_hash, "all_hashes": tx_hash}))
            nonce += 1
        self._save_many(failed + built)  # signed bytes stored before anything is broadcast
        for tx, fields in failed:
            if fields.get("status") == TxStatus.FATAL:
                self._confirmed(tx)
        self._broadcast([tx for tx, _ in built])

    def _estimation_failed(self, tx: Transaction, exc: Exception) -> dict[str, Any]:
        """The fields to store for a transaction whose estimation failed: retried with backoff
        after an outage-like error, `fatal` (its nonce not used) when the call would revert."""
        if not _reverts(exc) and tx.tries + 1 < MAX_BUILD_TRIES:
            log.warning("tx %s: estimation failed (%s); retrying", tx.idempotency_key, exc)
            return {"tries": tx.tries + 1, "error": f"estimation failed: {exc}"[:1000],
                    "not_before": time.time() + min(2.0 ** tx.tries, 60.0)}
        log.warning("tx %s: estimation reverted, not sending: %s", tx.idempotency_key, exc)
        return {"status": TxStatus.FATAL, "error": f"estimation reverted: {exc}"[:1000]}

    def _sign(self, call: dict[str, Any], nonce: int, gas: int, max_fee: int, tip: int
              ) -> tuple[str, str]:
        signed = self.account.sign_transaction({
            **call, "nonce": nonce, "gas": gas, "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip, "type": 2,
        })
        return signed.raw_transaction.to_0x_hex(), signed.hash.to_0x_hex()

    def _broadcast(self, txs: list[Transaction]) -> None:
        """Send the signed bytes of every transaction in one batch, in nonce order, and mark them
        `unconfirmed`; one the node refuses for an unexpected reason stays `in_progress` (sent
        again next pass) without holding back the others."""
        if not txs:
            return
        txs = sorted(txs, key=lambda tx: tx.nonce if tx.nonce is not None else -1)
        calls: list[tuple[str, list[Any]]] = [("eth_sendRawTransaction", [tx.raw]) for tx in txs]
        answers = rpc_batch(self.w3, [*calls, ("eth_blockNumber", [])])
        sent_block = answers[-1]
        if isinstance(sent_block, RpcError):
            raise sent_block
        updates: list[tuple[Transaction, dict[str, Any]]] = []
        for tx, answer in zip(txs, answers[:-1], strict=True):
            assert tx.raw is not None
            if isinstance(answer, RpcError) and not self._refusal_is_fine(tx, answer):
                log.warning("tx %s: broadcast refused (%s); sending again next pass",
                            tx.idempotency_key, str(answer)[:300])
                updates.append((tx, {"error": f"broadcast refused: {answer}"[:1000]}))
                continue
            updates.append((tx, {"status": TxStatus.UNCONFIRMED, "sent_block": _int(sent_block)}))
        self._save_many(updates)

    def _refusal_is_fine(self, tx: Transaction, exc: Exception) -> bool:
        """Whether a refused broadcast still leaves the transaction to be watched for a receipt."""
        message = str(exc).lower()
        if "already known" in message or "already imported" in message:
            return True  # the node has it: as good as sent
        if "underpriced" in message or "less than block base fee" in message:
            # the fee cap is below what the chain asks now: keep waiting (sent again at each
            # check), never loop on the refusal
            log.warning("tx %s: refused at its fee cap (%s); waiting", tx.idempotency_key,
                        message[:200])
            return True
        if "nonce too low" in message or "nonce has already been used" in message:
            # mined already (ours), or the nonce went to someone else: receipts will tell
            log.info("tx %s: nonce %s too low; checking receipts", tx.idempotency_key, tx.nonce)
            return True
        return False

    def _check(self, txs: list[Transaction], head: int, base_fee: int, mined_nonce: int) -> None:
        """Receipts of every hash of every transaction in one batch; confirm, wait, or replace."""
        if not txs:
            return
        hashes = [(tx, tx_hash) for tx in txs for tx_hash in reversed(tx.hashes())]
        answers = rpc_batch(self.w3, [("eth_getTransactionReceipt", [h]) for _, h in hashes])
        receipts: dict[str, dict[str, Any]] = {}
        for (_, tx_hash), answer in zip(hashes, answers, strict=True):
            if isinstance(answer, RpcError):
                raise answer  # the node could not say: not a verdict on the transaction
            if answer is not None and answer.get("blockNumber") is not None:
                receipts[tx_hash] = answer
        updates: list[tuple[Transaction, dict[str, Any]]] = []
        confirmed: list[Transaction] = []
        resend: list[Transaction] = []
        bump: list[Transaction] = []
        for tx in txs:
            found = next(((h, receipts[h]) for h in reversed(tx.hashes()) if h in receipts), None)
            if found is not None:
                tx_hash, receipt = found
                mined = _int(receipt["blockNumber"])
                if head - mined + 1 < self._depth:  # mined, not yet deep enough to count
                    updates.append((tx, {"mined_block": mined, "sent_block": head}))
                    continue
                updates.append((tx, {"status": TxStatus.CONFIRMED, "tx_hash": tx_hash,
                                     "succeeded": _int(receipt["status"]) == 1,
                                     "mined_block": mined}))
                confirmed.append(tx)
                continue
            assert tx.nonce is not None and tx.sent_block is not None
            if tx.mined_block is not None:  # it was mined, and a reorg took it out: send again
                log.warning("tx %s: its receipt vanished (reorg); sending it again",
                            tx.idempotency_key)
                updates.append((tx, {"mined_block": None, "status": TxStatus.IN_PROGRESS}))
                resend.append(tx)
            elif mined_nonce > tx.nonce:
                # the nonce is used but by none of our hashes (receipts may lag a block: wait one)
                if head - tx.sent_block > self._bump_after:
                    updates.append((tx, {"status": TxStatus.FATAL,
                                         "error": "nonce used by another transaction"}))
                    confirmed.append(tx)
            elif head - tx.sent_block >= self._bump_after:
                bump.append(tx)
        self._save_many(updates)
        for tx in confirmed:
            self._confirmed(tx)
        self._broadcast(resend + [self._replace(tx, base_fee) for tx in bump])

    def _replace(self, tx: Transaction, base_fee: int) -> Transaction:
        """Sign a replacement (same nonce, fees raised) and store it, to be broadcast; at the
        fee cap, the transaction as it is (the node may have dropped it)."""
        assert tx.nonce is not None and tx.gas is not None
        previous = (int(tx.max_fee or 0), int(tx.priority_fee or 0))
        fees = self._fees(tx, base_fee, previous=previous)
        if fees is None:
            log.warning("tx %s: at its fee cap (%.2f gwei max fee), waiting as it is",
                        tx.idempotency_key, previous[0] / GWEI)
            return tx
        max_fee, tip = fees
        raw, tx_hash = self._sign(self._call(tx), tx.nonce, tx.gas, max_fee, tip)
        log.info("tx %s: not mined after %d blocks; replacing with max fee %.2f gwei",
                 tx.idempotency_key, self._bump_after, max_fee / GWEI)
        self._save(tx, status=TxStatus.IN_PROGRESS, raw=raw, tx_hash=tx_hash,
                   max_fee=str(max_fee), priority_fee=str(tip), bumps=tx.bumps + 1,
                   all_hashes=f"{tx.all_hashes},{tx_hash}")
        return tx

    def _confirmed(self, tx: Transaction) -> None:
        if self.on_confirmed is not None:
            self.on_confirmed(tx)


def _rpc_call(call: dict[str, Any]) -> dict[str, Any]:
    """A call object as JSON-RPC takes it (quantities in hex)."""
    return {"from": call["from"], "to": call["to"], "data": call["data"],
            "value": hex(int(call["value"]))}


def _int(value: Any) -> int:
    """A JSON-RPC quantity (hex string) or an int."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _raise_errors(answers: list[Any]) -> list[Any]:
    for answer in answers:
        if isinstance(answer, RpcError):
            raise answer
    return answers


def _reverts(exc: Exception) -> bool:
    """Whether an estimation error is the chain saying the call would revert (not an outage)."""
    return isinstance(exc, ContractLogicError) or "revert" in str(exc).lower()


def calldata(contract_function: Any) -> str:
    """ABI-encoded call data of `contract.functions.f(args)`: straight through `eth_abi` (web3's
    own path normalizes every value of a batch through recursive formatters, ~5× slower), or
    web3's when the arguments need its normalizing (keywords, ENS names, hex for bytes)."""
    fn_abi, args = getattr(contract_function, "abi", None), getattr(contract_function, "args", None)
    if fn_abi is not None and args is not None and not getattr(contract_function, "kwargs", None):
        try:
            return "0x" + (function_abi_to_4byte_selector(fn_abi)
                           + abi_encode(get_abi_input_types(fn_abi), list(args))).hex()
        except (TypeError, ValueError, EncodingError):
            pass
    return str(contract_function._encode_transaction_data())


def checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))
