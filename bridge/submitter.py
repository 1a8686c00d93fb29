"""Writes outcomes back on-chain: `fulfillJob` for a result, `failJob` for a rejected job.

Exactly one on-chain result per job: before a transaction is recorded, the job's on-chain status is
read, and a job the chain has already ended (by us before a crash, by another oracle, or cancelled)
is closed in the ledger instead. Transactions go through the `TxManager` under an idempotency key,
and the contract refuses a second fulfilment in any case.

Nothing one job does holds back another: each job is handled in its own error boundary, the window
is shared fairly across requesters, and a job whose transactions keep failing leaves the window —
a result that cannot be fulfilled is failed instead (the requester gets the fee back per the rules),
and a failure that cannot be sent either is `abandoned` (the requester can cancel after the
deadline). A fulfilment may cost at most the job's fee.
"""

from __future__ import annotations

import logging
import time

from bridge import metrics
from bridge.chain import JobStatus, OnChainJob
from bridge.isolation import each_job
from bridge.ledger import Job, JobState, Ledger, Transaction, TxStatus
from bridge.ports import SettlementChain, TxQueue

log = logging.getLogger(__name__)

MAX_REASON_BYTES = 256
MAX_SUBMIT_ATTEMPTS = 5
SUBMIT_BATCH = 200
# A job whose deadline is nearer than this is failed instead of fulfilled: a fulfilment mined after
# the deadline reverts and burns gas, while failJob is allowed after it (and refunds the requester).
DEADLINE_MARGIN_S = 30


class Submitter:
    """`chain`: the jobs on-chain and the settlement calls (`ports.ContractChain`); `txm`: where
    transactions are recorded to be sent (`TxManager`)."""

    def __init__(self, chain: SettlementChain, txm: TxQueue, ledger: Ledger, chain_id: int,
                 deadline_margin_s: int = DEADLINE_MARGIN_S) -> None:
        self._chain = chain
        self._txm = txm
        self._ledger = ledger
        self._chain_id = chain_id
        self._address = chain.address
        self._margin = deadline_margin_s

    def submit_ready(self) -> int:
        """Record a transaction for every executed or rejected job; returns how many."""
        jobs = self._ledger.jobs_in(self._chain_id, self._address, JobState.EXECUTED,
                                    JobState.REJECTED, limit=SUBMIT_BATCH, fair=True)
        if not jobs:
            return 0
        now = self._latest_timestamp()  # one block read per batch
        return each_job(self._ledger, jobs, "submitting", lambda job: self._submit(job, now),
                        self._abandon)

    def confirm(self) -> int:
        """Settle jobs whose transaction is confirmed (or could not be sent); returns how many."""
        jobs = self._ledger.jobs_in(self._chain_id, self._address, JobState.SUBMITTING,
                                    limit=500)
        settled = [0]

        def confirm_one(job: Job) -> None:
            settled[0] += self._confirm(job)

        each_job(self._ledger, jobs, "confirming", confirm_one, self._abandon)
        return settled[0]

    def _confirm(self, job: Job) -> bool:
        assert job.submit_tx_id is not None
        tx = self._txm.get(job.submit_tx_id)
        assert tx is not None
        if tx.status == TxStatus.CONFIRMED and tx.succeeded:
            metrics.SUBMIT_LATENCY.observe(max(0.0, time.time() - tx.created_at))
            fulfilled = tx.idempotency_key.startswith("fulfill:")
            self._ledger.mark_settled(job, tx.tx_hash, tx.mined_block, fulfilled)
            return True
        if tx.status == TxStatus.FATAL or (tx.status == TxStatus.CONFIRMED and not tx.succeeded):
            self._retry_or_close(job, tx)
            return True
        return False

    def _submit(self, job: Job, chain_time: int) -> int:
        on_chain = self._chain.read_job(job.job_id)
        if on_chain.status != JobStatus.REQUESTED or not _same_request(job, on_chain):
            self._close(job, on_chain.status)
            return 0
        # the request this settles, as the ledger saw it (rows from before 0003 have no hash)
        binding = bytes.fromhex((job.request_hash or on_chain.request_hash).removeprefix("0x"))
        if job.state == JobState.EXECUTED:
            if chain_time + self._margin <= on_chain.deadline:
                assert job.result_cid is not None and job.exit_code is not None
                data = self._chain.fulfill_calldata(job.job_id, binding, job.result_cid,
                                                    job.exit_code)
                self._record(job, "fulfill", data, max_cost=int(job.fee_wei))
                return 1
            job.reason = f"result {job.result_cid} was ready too close to the job's deadline"
        reason = _truncate(job.reason or "failed")
        self._record(job, "fail", self._chain.fail_calldata(job.job_id, binding, reason))
        return 1

    def _record(self, job: Job, kind: str, data: str, max_cost: int | None = None) -> None:
        key = f"{kind}:{job.key}:{job.submit_attempts}"
        tx = self._txm.enqueue(key, self._address, data, max_cost=max_cost)
        self._ledger.mark_submitting(job, tx.id, f"{kind}Job")

    def _retry_or_close(self, job: Job, tx: Transaction) -> None:
        on_chain = self._chain.read_job(job.job_id)
        if on_chain.status != JobStatus.REQUESTED:
            self._close(job, on_chain.status)
            return
        attempts = job.submit_attempts + 1
        failing = tx.idempotency_key.startswith("fail:")
        detail = f"tx {tx.tx_hash or '-'}: {tx.error or 'reverted'}"[:500]
        if attempts < MAX_SUBMIT_ATTEMPTS:
            self._ledger.mark_submit_retry(job, detail, attempts, failing)
        elif failing:
            self._abandon(job, f"failJob could not be sent after {attempts} attempts: {detail}")
        else:  # the result cannot be delivered: fail the job instead (the requester is refunded)
            reason = f"the result could not be submitted after {attempts} attempts: {detail}"
            self._ledger.mark_undeliverable(job, reason)

    def _abandon(self, job: Job, reason: str) -> None:
        """No transaction can settle the job: stop trying (the requester can cancel it after its
        deadline and get the whole fee back)."""
        log.error("job %s abandoned: %s", job.key, reason)
        self._ledger.mark_abandoned(job, reason)

    def _close(self, job: Job, status: JobStatus) -> None:
        state = {JobStatus.COMPLETED: JobState.COMPLETED, JobStatus.FAILED: JobState.FAILED}.get(
            status, JobState.CLOSED)
        detail = (f"on-chain status is {status.name}" if status != JobStatus.NONE
                  else "no such job on-chain (request reorged out?)")
        self._ledger.mark_closed(job, detail, state)

    def _latest_timestamp(self) -> int:
        return self._chain.latest_timestamp()


def _same_request(job: Job, on_chain: OnChainJob) -> bool:
    """The job on-chain under this id is the request the ledger recorded (not another one a reorg
    gave the same id)."""
    return (on_chain.requester.lower() == job.requester.lower()
            and on_chain.consumer.lower() == job.consumer.lower()
            and on_chain.fee == int(job.fee_wei)
            and (job.request_hash is None or job.request_hash == on_chain.request_hash))


def _truncate(reason: str) -> str:
    data = reason.encode()
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


