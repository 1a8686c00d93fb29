"""Replicated jobs (replicas = k > 1): after our replica ran, commit → reveal → finalize.

k operators each claim a slot (`bridge.claims`) and run the job; then each, on its own:

1. **commit** `commitmentOf(jobId, us, cid, exit, result, salt)`, within its lease. The salt is
   random and written to the ledger *before* the commitment is recorded for sending, so a crash
   between commit and reveal can still open it. The commitment binds our address: a copier
   watching the mempool can neither reuse it nor open it.
2. **reveal** once the reveal phase is open: the contract opens it at the last commit, or at a
   reveal when a strict majority committed and every claimed slot's lease has ended (so a fast
   majority cannot shut the others out). The reveal that makes a strict majority completes the job
   and calls the consumer.
3. **finalize** once every committed replica revealed, or the reveal window ended: payouts to the
   agreeing operators, slashing of the others (or, with no majority, the job fails and the
   requester is refunded). Anyone may call it; whoever is first pays its gas, the others see it
   done and stop.

Waiting for the others is polling with a deferral (`POLL_S`), per job, inside each job's own error
boundary: a job whose replicas never show up waits for its deadline, it holds back nothing else.
"""

from __future__ import annotations

import logging
import secrets

from bridge.chain import JobStatus, OnChainJob, ReplicaSlot, ReplicaState
from bridge.isolation import each_job
from bridge.ledger import Job, JobState, Ledger, Transaction, TxStatus
from bridge.ports import SettlementChain, TxQueue
from bridge.terms import Terms, commitment_of, result_digest
from bridge.timeline import REPLICATING

log = logging.getLogger(__name__)

POLL_S = 1.0  # a job waiting for the other replicas is looked at again after this long
MAX_TX_ATTEMPTS = 5
RETRY_S = 3.0
BATCH = 500


class Replication:
    """`operator`: the address our `TxManager` signs with (the one holding our slots)."""

    def __init__(self, chain: SettlementChain, txm: TxQueue, ledger: Ledger, chain_id: int,
                 operator: str) -> None:
        self._chain = chain
        self._txm = txm
        self._ledger = ledger
        self._chain_id = chain_id
        self._address = chain.address
        self.operator = operator

    # -- commit (from the submitter, for an executed replicated job) -------------------------------
    def commit(self, job: Job, terms: Terms) -> None:
        """Record our commitment of `job`'s result for sending (state `committing`)."""
        assert job.result_cid is not None and job.exit_code is not None
        if job.salt is None:  # kept before anything is sent: the reveal needs exactly this salt
            self._ledger.keep_salt(job, "0x" + secrets.token_bytes(32).hex())
        assert job.salt is not None
        salt = bytes.fromhex(job.salt.removeprefix("0x"))
        commitment = commitment_of(job.job_id, self.operator, job.result_cid, job.exit_code,
                                   _result(job), salt)
        key = f"commit:{job.key}:{job.submit_attempts}"
        tx = self._txm.enqueue(key, self._address,
                               self._chain.commit_calldata(job.job_id, terms, commitment))
        self._ledger.mark_committing(job, tx.id, job.salt)

    # -- the rest, each pass ---------------------------------------------------------------------
    def advance(self) -> int:
        """Move every replicated job of ours one step if it can; returns how many were looked at."""
        jobs = self._ledger.jobs_in(self._chain_id, self._address, *REPLICATING, limit=BATCH)
        if not jobs:
            return 0
        now = self._chain.latest_timestamp()
        return each_job(self._ledger, jobs, "replicating", lambda job: self._advance(job, now),
                        self._give_up)

    def _advance(self, job: Job, now: int) -> None:
        state = JobState(job.state)
        if state in (JobState.COMMITTING, JobState.REVEALING, JobState.FINALIZING):
            self._confirm(job, state)
            return
        on_chain = self._chain.read_job(job.job_id)
        if self._settled(job, on_chain):
            return
        terms = Terms.from_row(job)
        slots = self._chain.read_replicas(job.job_id, terms.replicas)
        if state == JobState.COMMITTED:
            self._maybe_reveal(job, terms, on_chain, slots, now)
        else:
            self._maybe_finalize(job, terms, on_chain, slots, now)

    def _maybe_reveal(self, job: Job, terms: Terms, on_chain: OnChainJob,
                      slots: list[ReplicaSlot], now: int) -> None:
        revealing = on_chain.status == JobStatus.REVEALING or on_chain.settle_pending
        if revealing and now > on_chain.lease_end:
            self._ledger.mark_closed(job, f"the reveal window closed at {on_chain.lease_end} "
                                          "before we could reveal")
            return
        if not revealing and not may_open_reveal(slots, now):
            self._ledger.defer(job, POLL_S)  # the other replicas are still claiming / committing
            return
        assert job.result_cid is not None and job.exit_code is not None and job.salt is not None
        data = self._chain.reveal_calldata(job.job_id, terms, job.result_cid, job.exit_code,
                                           _result(job), bytes.fromhex(job.salt.removeprefix("0x")))
        tx = self._txm.enqueue(f"reveal:{job.key}:{job.submit_attempts}", self._address, data)
        self._ledger.mark_revealing(job, tx.id)

    def _maybe_finalize(self, job: Job, terms: Terms, on_chain: OnChainJob,
                        slots: list[ReplicaSlot], now: int) -> None:
        unrevealed = any(slot.state == ReplicaState.COMMITTED for slot in slots)
        if unrevealed and now <= on_chain.lease_end:
            self._ledger.defer(job, POLL_S)  # the window is open and a replica may still reveal
            return
        tx = self._txm.enqueue(f"finalize:{job.key}:{job.submit_attempts}", self._address,
                               self._chain.finalize_calldata(job.job_id, terms))
        self._ledger.mark_finalizing(job, tx.id)

    def _confirm(self, job: Job, state: JobState) -> None:
        assert job.submit_tx_id is not None
        tx = self._txm.get(job.submit_tx_id)
        assert tx is not None
        if tx.status not in (TxStatus.CONFIRMED, TxStatus.FATAL):
            return
        went_through = tx.status == TxStatus.CONFIRMED and bool(tx.succeeded)
        on_chain = self._chain.read_job(job.job_id)
        if state == JobState.FINALIZING or (not on_chain.status.open
                                            and not on_chain.settle_pending):
            if self._settled(job, on_chain):
                return
        else:
            slot = self._my_slot(job)
            reached = ReplicaState.COMMITTED if state == JobState.COMMITTING else ReplicaState.REVEALED
            if went_through or (slot is not None and slot.state >= reached):
                if state == JobState.COMMITTING:
                    self._ledger.mark_committed(job, f"commitment on-chain (tx {tx.tx_hash})")
                else:
                    self._ledger.mark_revealed(job, f"answer 0x{_answer(job).hex()} revealed "
                                                    f"(tx {tx.tx_hash})")
                return
        self._retry(job, state, tx)

    def _retry(self, job: Job, state: JobState, tx: Transaction) -> None:
        back = {JobState.COMMITTING: JobState.EXECUTED, JobState.REVEALING: JobState.COMMITTED,
                JobState.FINALIZING: JobState.REVEALED}[state]
        attempts = job.submit_attempts + 1
        detail = f"tx {tx.tx_hash or '-'}: {tx.error or 'reverted'}"[:500]
        if attempts >= MAX_TX_ATTEMPTS:
            self._ledger.mark_closed(job, f"{state.value} failed {attempts} times (last: "
                                          f"{detail}); given up")
            return
        self._ledger.mark_replica_retry(job, back, detail, attempts, RETRY_S * attempts)

    def _settled(self, job: Job, on_chain: OnChainJob) -> bool:
        """The chain has settled the job (finalized, failed, cancelled): recorded here, with
        whether our answer won."""
        if on_chain.status.open or on_chain.settle_pending:
            return False
        if on_chain.status == JobStatus.COMPLETED:
            agreed = on_chain.digest == _answer(job) and job.state in (JobState.REVEALED,
                                                                       JobState.FINALIZING)
            detail = ("completed with the answer we revealed: our share of the fee is credited"
                      if agreed else "completed with another answer than ours")
            self._ledger.mark_agreement(job, agreed, completed=True, detail=detail)
        elif on_chain.status == JobStatus.FAILED:
            self._ledger.mark_agreement(job, False, completed=False,
                                        detail="failed on-chain: the replicas did not agree "
                                               "(the requester is refunded)")
        else:
            self._ledger.mark_closed(job, f"on-chain status is {on_chain.status.name}")
        return True

    def _my_slot(self, job: Job) -> ReplicaSlot | None:
        slots = self._chain.read_replicas(job.job_id, job.replicas)
        return next((slot for slot in slots if slot.held_by(self.operator)), None)

    def _give_up(self, job: Job, reason: str) -> None:
        log.error("job %s: replication given up: %s", job.key, reason)
        self._ledger.mark_closed(job, reason)


def may_open_reveal(slots: list[ReplicaSlot], now: int) -> bool:
    """`JobReplication._mayOpenReveal`, plus the case the contract opens at the last commit: every
    slot committed, or a strict majority committed and every claimed slot's lease has ended."""
    taken = [slot for slot in slots if slot.state != ReplicaState.EMPTY]
    committed = sum(slot.state >= ReplicaState.COMMITTED for slot in slots)
    if committed == len(slots):
        return True
    return all(now > slot.lease_end for slot in taken) and committed * 2 > len(slots)


def _result(job: Job) -> bytes:
    return bytes.fromhex(job.result or "")


def _answer(job: Job) -> bytes:
    """`resultHash` of our result: what our reveal records, and what the majority is counted in."""
    assert job.result_cid is not None and job.exit_code is not None
    return result_digest(job.result_cid, job.exit_code, _result(job))
