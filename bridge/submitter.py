"""Writes outcomes back on-chain: `fulfillJob` for a result, `failJob` for a rejected job.

Exactly one on-chain result per job: before a transaction is recorded, the job's on-chain status is
read, and a job the chain has already ended (by us before a crash, by another oracle, or cancelled)
is closed in the ledger instead. Transactions go through the `TxManager` under an idempotency key,
and the contract refuses a second fulfilment in any case.
"""

from __future__ import annotations

import logging
import time

from web3.contract import Contract

from bridge import metrics
from bridge.chain import JobStatus, read_job
from bridge.ledger import Job, JobState, Ledger, Transaction, TxStatus
from bridge.txmanager import TxManager, calldata

log = logging.getLogger(__name__)

MAX_REASON_BYTES = 256
MAX_SUBMIT_ATTEMPTS = 5
# A job whose deadline is nearer than this is failed instead of fulfilled: a fulfilment mined after
# the deadline reverts and burns gas, while failJob is allowed after it (and refunds the requester).
DEADLINE_MARGIN_S = 30


class Submitter:
    def __init__(self, contract: Contract, txm: TxManager, ledger: Ledger, chain_id: int,
                 deadline_margin_s: int = DEADLINE_MARGIN_S) -> None:
        self._contract = contract
        self._txm = txm
        self._ledger = ledger
        self._chain_id = chain_id
        self._address = str(contract.address)
        self._margin = deadline_margin_s

    def submit_ready(self) -> int:
        """Record a transaction for every executed or rejected job; returns how many."""
        jobs = self._ledger.jobs_in(self._chain_id, self._address, JobState.EXECUTED,
                                    JobState.REJECTED)
        started = 0
        now = self._latest_timestamp() if jobs else 0  # one block read per batch
        for job in jobs:
            if job.submit_attempts >= MAX_SUBMIT_ATTEMPTS:
                continue
            started += self._submit(job, now)
        return started

    def confirm(self) -> int:
        """Settle jobs whose transaction is confirmed (or could not be sent); returns how many."""
        settled = 0
        for job in self._ledger.jobs_in(self._chain_id, self._address, JobState.SUBMITTING,
                                        limit=500):
            assert job.submit_tx_id is not None
            tx = self._txm.get(job.submit_tx_id)
            assert tx is not None
            if tx.status == TxStatus.CONFIRMED and tx.succeeded:
                metrics.SUBMIT_LATENCY.observe(max(0.0, time.time() - tx.created_at))
                fulfilled = tx.idempotency_key.startswith("fulfill:")
                self._ledger.update(job, "fulfilled" if fulfilled else "failed-on-chain",
                                    f"tx {tx.tx_hash} in block {tx.mined_block}",
                                    state=JobState.COMPLETED if fulfilled else JobState.FAILED,
                                    submit_tx=tx.tx_hash)
                settled += 1
            elif tx.status == TxStatus.FATAL or (tx.status == TxStatus.CONFIRMED
                                                 and not tx.succeeded):
                self._retry_or_close(job, tx)
                settled += 1
        return settled

    def _submit(self, job: Job, chain_time: int) -> int:
        on_chain = read_job(self._contract, job.job_id)
        if on_chain.status != JobStatus.REQUESTED or on_chain.requester.lower() != job.requester.lower():
            self._close(job, on_chain.status)
            return 0
        if job.state == JobState.EXECUTED:
            if chain_time + self._margin <= on_chain.deadline:
                assert job.result_cid is not None and job.exit_code is not None
                call = self._contract.functions.fulfillJob(job.job_id, job.result_cid,
                                                           job.exit_code)
                self._record(job, "fulfill", call)
                return 1
            job.reason = f"result {job.result_cid} was ready too close to the job's deadline"
        reason = _truncate(job.reason or "failed")
        self._record(job, "fail", self._contract.functions.failJob(job.job_id, reason))
        return 1

    def _record(self, job: Job, kind: str, call: object) -> None:
        key = f"{kind}:{job.key}:{job.submit_attempts}"
        tx = self._txm.enqueue(key, str(self._contract.address), calldata(call))
        self._ledger.update(job, "submitting", f"{kind}Job (tx #{tx.id})",
                            state=JobState.SUBMITTING, submit_tx_id=tx.id)

    def _retry_or_close(self, job: Job, tx: Transaction) -> None:
        on_chain = read_job(self._contract, job.job_id)
        if on_chain.status != JobStatus.REQUESTED:
            self._close(job, on_chain.status)
            return
        attempts = job.submit_attempts + 1
        back = JobState.REJECTED if tx.idempotency_key.startswith("fail:") else JobState.EXECUTED
        detail = f"tx {tx.tx_hash or '-'}: {tx.error or 'reverted'}"[:500]
        if attempts >= MAX_SUBMIT_ATTEMPTS:
            detail += f"; gave up after {attempts} attempts"
        self._ledger.update(job, "submit-error", detail, state=back, submit_attempts=attempts)

    def _close(self, job: Job, status: JobStatus) -> None:
        state = {JobStatus.COMPLETED: JobState.COMPLETED, JobStatus.FAILED: JobState.FAILED}.get(
            status, JobState.CLOSED)
        detail = (f"on-chain status is {status.name}" if status != JobStatus.NONE
                  else "no such job on-chain (request reorged out?)")
        self._ledger.update(job, "closed", detail, state=state)

    def _latest_timestamp(self) -> int:
        return int(self._txm.w3.eth.get_block("latest")["timestamp"])


def _truncate(reason: str) -> str:
    data = reason.encode()
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


