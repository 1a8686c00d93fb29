"""Writes outcomes back on-chain: `fulfillJob` for a result, `failJob` for a rejected job.

Exactly one on-chain result per job: before sending, the job's on-chain status is read, and a job the
chain has already ended (by us before a crash, by another oracle, or cancelled) is closed in the
ledger instead. The contract refuses a second fulfilment in any case.
"""

from __future__ import annotations

import logging

from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted

from bridge.chain import ChainError, JobStatus, TxSender, read_job
from bridge.ledger import Job, JobState, Ledger

log = logging.getLogger(__name__)

MAX_REASON_BYTES = 256
MAX_SUBMIT_ATTEMPTS = 5


class Submitter:
    def __init__(self, contract: Contract, sender: TxSender, ledger: Ledger, chain_id: int
                 ) -> None:
        self._contract = contract
        self._sender = sender
        self._ledger = ledger
        self._chain_id = chain_id
        self._address = str(contract.address)

    def submit_ready(self) -> int:
        """Submit every executed or rejected job; returns how many reached a final state."""
        finished = 0
        jobs = self._ledger.jobs_in(self._chain_id, self._address, JobState.EXECUTED,
                                    JobState.REJECTED)
        for job in jobs:
            if job.submit_attempts >= MAX_SUBMIT_ATTEMPTS:
                continue
            try:
                finished += self._submit(job)
            except (ChainError, ContractLogicError, TimeExhausted, ValueError) as exc:
                attempts = job.submit_attempts + 1
                log.warning("job %s: submit attempt %d failed: %s", job.key, attempts, exc)
                self._ledger.update(job, "submit-error", str(exc)[:500], submit_attempts=attempts)
        return finished

    def _submit(self, job: Job) -> int:
        on_chain = read_job(self._contract, job.job_id)
        if on_chain.status != JobStatus.REQUESTED:
            self._ledger.update(job, "closed", f"on-chain status is {on_chain.status.name}",
                                state=_state_for(on_chain.status))
            return 1
        if job.state == JobState.EXECUTED:
            deadline_passed = self._latest_timestamp() > on_chain.deadline
            if not deadline_passed:
                assert job.result_cid is not None and job.exit_code is not None
                call = self._contract.functions.fulfillJob(job.job_id, job.result_cid,
                                                           job.exit_code)
                receipt = self._sender.transact(call)
                self._ledger.update(job, "fulfilled", receipt["transactionHash"].to_0x_hex(),
                                    state=JobState.COMPLETED,
                                    submit_tx=receipt["transactionHash"].to_0x_hex())
                return 1
            job.reason = f"result {job.result_cid} was ready after the job's deadline"
        reason = _truncate(job.reason or "failed")
        receipt = self._sender.transact(self._contract.functions.failJob(job.job_id, reason))
        self._ledger.update(job, "failed-on-chain", reason, state=JobState.FAILED,
                            submit_tx=receipt["transactionHash"].to_0x_hex(), reason=reason)
        return 1

    def _latest_timestamp(self) -> int:
        return int(self._sender.w3.eth.get_block("latest")["timestamp"])


def _state_for(status: JobStatus) -> JobState:
    return {JobStatus.COMPLETED: JobState.COMPLETED, JobStatus.FAILED: JobState.FAILED}.get(
        status, JobState.CLOSED)


def _truncate(reason: str) -> str:
    data = reason.encode()
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
