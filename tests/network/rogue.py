"""A dishonest operator: a staked key driving the JobManager directly from the test (no bridge, no
worker, nothing of the product), to claim replica slots, commit and reveal whatever it likes,
or copy what honest operators put on-chain or in the mempool."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from bridge import operators
from bridge.chain import TxSender
from bridge.terms import Terms

PRIORITY_FEE_GWEI = 50.0  # the bridges tip 1 gwei: our transactions go first in a block


@dataclass(frozen=True)
class Opening:
    """What a reveal discloses."""

    result_cid: str
    exit_code: int
    result: bytes
    salt: bytes

    def args(self) -> tuple[str, int, bytes, bytes]:
        return self.result_cid, self.exit_code, self.result, self.salt


class Rogue:
    def __init__(self, w3: Web3, manager: Contract, key: str) -> None:
        self.w3 = w3
        self.manager = manager
        self.sender = TxSender(w3, key, priority_fee_gwei=PRIORITY_FEE_GWEI)
        self.address = str(Account.from_key(key).address)

    def register(self, stake: int | None = None) -> None:
        """Bond `stake` (default the minimum); a slashed rogue needs more to claim again."""
        operators.register(self.sender, self.manager, stake)

    def claim(self, job_id: int, terms: Terms) -> None:
        self.sender.transact(self.manager.functions.claimJob(job_id, terms.as_tuple()))

    def commitment(self, job_id: int, opening: Opening) -> bytes:
        """`commitmentOf(jobId, me, …)`, as the contract computes it."""
        return bytes(self.manager.functions.commitmentOf(job_id, self.address, *opening.args())
                     .call())

    def commit(self, job_id: int, terms: Terms, result_cid: str, exit_code: int = 0,
               result: bytes = b"") -> Opening:
        """Commit to a result of our choosing; returns what opens it."""
        opening = Opening(result_cid, exit_code, result, os.urandom(32))
        self.commit_raw(job_id, terms, self.commitment(job_id, opening))
        return opening

    def commit_raw(self, job_id: int, terms: Terms, commitment: bytes) -> None:
        self.sender.transact(self.manager.functions.commitResult(job_id, terms.as_tuple(),
                                                                 commitment))

    def reveal(self, job_id: int, terms: Terms, opening: Opening) -> None:
        self.sender.transact(self.manager.functions.revealResult(job_id, terms.as_tuple(),
                                                                 *opening.args()))

    def try_reveal(self, job_id: int, terms: Terms, opening: Opening) -> tuple[int | None, int]:
        """Reveal `opening` from our key as a real transaction (our sender tips high, to get
        ahead of the reveal it copies): (the `Reason` the contract rejects it with, None if it
        accepts it; the mined transaction's status)."""
        call = self.manager.functions.revealResult(job_id, terms.as_tuple(), *opening.args())
        reason = None
        try:
            call.call({"from": self.address})
        except Exception as exc:  # the revert, decoded below
            reason = rejection_reason(exc)
        tx = call.build_transaction({"from": self.address, "gas": 400_000})
        for key in ("maxFeePerGas", "maxPriorityFeePerGas", "nonce"):
            tx.pop(key, None)  # type: ignore[misc]
        receipt = self.sender.send(tx)  # a fixed gas: sent even though it reverts
        assert not isinstance(receipt, str)
        return reason, int(receipt["status"])

    def watch_reveal(self, job_id: int, operators: Collection[str], timeout: float
                     ) -> tuple[Opening, str, str]:
        """Wait for a reveal of `job_id` by one of `operators`: in the mempool if we see it there
        first ("mempool"), else mined ("mined"); returns its opening, where it was seen and whose
        it is."""
        deadline = time.monotonic() + timeout
        wanted = {o.lower() for o in operators}
        while time.monotonic() < deadline:
            pool: Any = self.w3.provider.make_request("txpool_content", [])  # type: ignore[arg-type]
            pending = (pool.get("result") or {}).get("pending") or {}
            for sender, txs in pending.items():
                if sender.lower() not in wanted:
                    continue
                for tx in txs.values():
                    found = self._opening_in(tx.get("input") or tx.get("data") or "0x", job_id)
                    if found:
                        return found, "mempool", sender.lower()
            for event in self.manager.events.ResultRevealed().get_logs(
                    from_block=0, argument_filters={"jobId": job_id}):
                revealer = str(event["args"]["operator"]).lower()
                if revealer in wanted:
                    tx = self.w3.eth.get_transaction(event["transactionHash"])
                    found = self._opening_in(HexBytes(tx["input"]).to_0x_hex(), job_id)
                    assert found, "a ResultRevealed whose transaction is no reveal"
                    return found, "mined", revealer
            time.sleep(0.05)
        raise AssertionError(f"no reveal of job {job_id} by {sorted(wanted)} within "
                             f"{timeout:.0f} s")

    def _opening_in(self, data: str, job_id: int) -> Opening | None:
        try:
            function, args = self.manager.decode_function_input(data)
        except Exception:  # not a JobManager call we know
            return None
        name = function.fn_name
        if name == "revealResult" and int(args["jobId"]) == job_id:
            return Opening(str(args["resultCid"]), int(args["exitCode"]), bytes(args["result"]),
                           bytes(args["salt"]))
        if name == "revealBatch":
            for item in args["items"]:
                values = dict(item) if not isinstance(item, tuple) else dict(
                    zip(("jobId", "terms", "resultCid", "exitCode", "result", "salt"), item,
                        strict=True))
                if int(values["jobId"]) == job_id:
                    return Opening(str(values["resultCid"]), int(values["exitCode"]),
                                   bytes(values["result"]), bytes(values["salt"]))
        return None


def rejection_reason(error: BaseException) -> int | None:
    """The `Reason` of a `JobManagerRejected(jobId, reason)` revert, else None."""
    data = getattr(error, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if not isinstance(data, str):
        return None
    selector = "0x" + keccak(text="JobManagerRejected(uint256,uint8)")[:4].hex()
    if not data.startswith(selector):
        return None
    return int(data[-64:], 16)
