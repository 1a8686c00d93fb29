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

JobManager v2: only the job's claimer may settle it, quoting the request's `Terms` (rebuilt from
the ledger, `bridge.terms`). A rejected job that was never claimed (a bad spec, a request that was
not UTF-8) is claimed first (`bridge.claims`), then failed. Several results ready in one pass go
in one `fulfillBatch` (up to `FULFIL_BATCH_MAX`); the contract skips a bad item
(`SettlementSkipped`) without reverting the rest, so after a batch is mined each of its jobs is
checked on-chain: settled with our result (the stored result digest is ours), or sent again.
"""

from __future__ import annotations

import hashlib
import logging
import time

from bridge import metrics
from bridge.chain import JobStatus, OnChainJob
from bridge.claims import Claims
from bridge.isolation import OUTAGES, each_job
from bridge.ledger import Job, JobState, Ledger, Transaction, TxStatus
from bridge.ports import Fulfilment, SettlementChain, TxQueue
from bridge.replication import Replication
from bridge.terms import Terms, result_digest

log = logging.getLogger(__name__)

MAX_REASON_BYTES = 256
MAX_SUBMIT_ATTEMPTS = 5
SUBMIT_BATCH = 200
# A job whose deadline is nearer than this is failed instead of fulfilled: a fulfilment mined after
# the deadline reverts and burns gas, while failJob is allowed after it (and refunds the requester).
DEADLINE_MARGIN_S = 30
FULFIL_BATCH_MAX = 20  # the batch size the contract's gas target is set for
BATCH_PREFIX = "fulfill-batch:"
CONFIRM_BATCH = 500  # submitting jobs looked at per pass

Settled = tuple[Job, str | None, int | None, bool]
"""A job whose settling transaction is confirmed: job, tx hash, block, fulfilled (else failed)."""


class Submitter:
    """`chain`: the jobs on-chain and the settlement calls (`ports.ContractChain`); `txm`: where
    transactions are recorded to be sent (`TxManager`)."""

    def __init__(self, chain: SettlementChain, txm: TxQueue, ledger: Ledger, chain_id: int,
                 claims: Claims, replication: Replication | None = None,
                 deadline_margin_s: int = DEADLINE_MARGIN_S) -> None:
        self._claims = claims
        self._replication = replication or Replication(chain, txm, ledger, chain_id,
                                                       claims.operator)
        self._operator = claims.operator
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
        on_chain = self._chain.read_jobs([job.job_id for job in jobs])  # one round trip
        ready: list[tuple[Job, Terms]] = []  # results to fulfil, in one transaction if several
        handled = each_job(self._ledger, jobs, "submitting",
                           lambda job: self._submit(job, now, ready, on_chain.get(job.job_id)),
                           self._abandon)
        for start in range(0, len(ready), FULFIL_BATCH_MAX):
            chunk = ready[start:start + FULFIL_BATCH_MAX]
            try:
                self._fulfil(chunk)
            except OUTAGES:
                raise
            except Exception:  # a batch one job spoils: each on its own, inside its boundary
                log.warning("fulfillBatch of %d could not be built; one by one", len(chunk),
                            exc_info=True)
                each_job(self._ledger, [job for job, _ in chunk], "submitting",
                         lambda job: self._fulfil([(job, Terms.from_row(job))]), self._abandon)
        return handled

    def confirm(self) -> int:
        """Settle jobs whose transaction is confirmed (or could not be sent); returns how many."""
        jobs = self._ledger.jobs_in(self._chain_id, self._address, JobState.SUBMITTING,
                                    limit=CONFIRM_BATCH)
        # one ledger query for the transactions, one round trip for the batch items' state
        txs = self._txm.get_many([job.submit_tx_id for job in jobs if job.submit_tx_id])
        items = [job.job_id for job in jobs
                 if (tx := txs.get(job.submit_tx_id or 0)) is not None and _mined_ok(tx)
                 and tx.idempotency_key.startswith(BATCH_PREFIX)]
        on_chain = self._chain.read_jobs(items) if items else {}
        count = [0]
        settled: list[Settled] = []  # marked together after the boundaries

        def confirm_one(job: Job) -> None:
            count[0] += self._confirm(job, txs, on_chain, settled)

        each_job(self._ledger, jobs, "confirming", confirm_one, self._abandon)
        self._mark_settled(settled)
        return count[0]

    def _mark_settled(self, settled: list[Settled]) -> None:
        """One ledger transaction for every settled job; should it fail for a reason of its
        own, each job on its own (inside its boundary)."""
        try:
            self._ledger.mark_settled_many(settled)
        except OUTAGES:
            raise
        except Exception:
            log.warning("marking %d settled jobs at once failed; one by one", len(settled),
                        exc_info=True)
            by_job = {id(item[0]): item for item in settled}
            each_job(self._ledger, [item[0] for item in settled], "confirming",
                     lambda job: self._ledger.mark_settled(*by_job[id(job)]), self._abandon)

    def _confirm(self, job: Job, txs: dict[int, Transaction], on_chain: dict[int, OnChainJob],
                 settled: list[Settled]) -> bool:
        assert job.submit_tx_id is not None
        tx = txs.get(job.submit_tx_id) or self._txm.get(job.submit_tx_id)
        assert tx is not None
        if _mined_ok(tx):
            if tx.idempotency_key.startswith(BATCH_PREFIX):
                return self._confirm_batch_item(job, tx, on_chain.get(job.job_id), settled)
            metrics.SUBMIT_LATENCY.observe(max(0.0, time.time() - tx.created_at))
            fulfilled = tx.idempotency_key.startswith("fulfill:")
            settled.append((job, tx.tx_hash, tx.mined_block, fulfilled))
            return True
        if tx.status == TxStatus.FATAL or (tx.status == TxStatus.CONFIRMED and not tx.succeeded):
            self._retry_or_close(job, tx)
            return True
        return False

    def _submit(self, job: Job, chain_time: int, ready: list[tuple[Job, Terms]],
                on_chain: OnChainJob | None = None) -> int:
        if on_chain is None:  # not in the window's batch read (its call failed): on its own
            on_chain = self._chain.read_job(job.job_id)
        terms = Terms.from_row(job)
        if not on_chain.status.open or not _same_request(terms, on_chain):
            self._close(job, on_chain.status)
            return 0
        if terms.replicas > 1:
            return self._submit_replica(job, terms, chain_time)
        if not on_chain.held_by(self._operator):
            unheld = job.lease_end is None or on_chain.status == JobStatus.REQUESTED
            if job.state == JobState.REJECTED and unheld:
                self._claims.claim(job, on_chain)  # failed once the claim is confirmed
            else:  # our lease lapsed and another operator took the job over: it is theirs now
                self._ledger.mark_closed(job, f"no longer ours: held by {on_chain.claimer}")
            return 0
        if job.state == JobState.EXECUTED:
            if chain_time + self._margin <= terms.deadline:
                assert job.result_cid is not None and job.exit_code is not None
                ready.append((job, terms))
                return 1
            job.reason = f"result {job.result_cid} was ready too close to the job's deadline"
        reason = _truncate(job.reason or "failed")
        self._record(job, "fail", self._chain.fail_calldata(job.job_id, terms, reason))
        return 1

    def _submit_replica(self, job: Job, terms: Terms, chain_time: int) -> int:
        """A replicated job: its result is committed (then revealed, `bridge.replication`); one
        that cannot run has no failure to record (only a claimer of a single-replica job may fail
        it): left to the other replicas, or to the requester's cancel after the deadline."""
        if job.state == JobState.EXECUTED and chain_time <= terms.deadline:
            self._replication.commit(job, terms)
            return 1
        self._ledger.mark_closed(job, f"not committed ({job.reason or 'past the deadline'}): a "
                                      "replicated job is left to its other replicas")
        return 0

    def _fulfil(self, ready: list[tuple[Job, Terms]]) -> None:
        """One `fulfillJob`, or one `fulfillBatch` for several: it may cost at most their fees."""
        if not ready:
            return
        items: list[Fulfilment] = []
        for job, terms in ready:
            assert job.result_cid is not None and job.exit_code is not None
            items.append((job.job_id, terms, job.result_cid, job.exit_code, _result(job)))
        max_cost = sum(int(job.fee_wei) for job, _ in ready)
        if len(items) == 1:
            job, _ = ready[0]
            self._record(job, "fulfill", self._chain.fulfill_calldata(*items[0]),
                         max_cost=max_cost)
            return
        # one key for this set of jobs at these attempts: recorded once, whatever happens next
        members = ",".join(f"{job.key}:{job.submit_attempts}" for job, _ in ready)
        key = BATCH_PREFIX + hashlib.sha256(members.encode()).hexdigest()
        tx = self._txm.enqueue(key, self._address, self._chain.fulfill_batch_calldata(items),
                               max_cost=max_cost)
        self._ledger.mark_submitting_many([job for job, _ in ready], tx.id,
                                          f"fulfillBatch of {len(ready)}")

    def _confirm_batch_item(self, job: Job, tx: Transaction, on_chain: OnChainJob | None,
                            settled: list[Settled]) -> bool:
        """The batch was mined; whether it settled this job is on-chain (an item may have been
        skipped): completed with our result's digest, or sent again."""
        if on_chain is None:
            on_chain = self._chain.read_job(job.job_id)
        assert job.result_cid is not None and job.exit_code is not None
        if (on_chain.status == JobStatus.COMPLETED
                and on_chain.digest == result_digest(job.result_cid, job.exit_code,
                                                     _result(job))):
            metrics.SUBMIT_LATENCY.observe(max(0.0, time.time() - tx.created_at))
            settled.append((job, tx.tx_hash, tx.mined_block, True))
        elif on_chain.status.open:
            self._retry(job, tx, "skipped in the batch (SettlementSkipped)")
        else:
            self._close(job, on_chain.status)
        return True

    def _record(self, job: Job, kind: str, data: str, max_cost: int | None = None) -> None:
        key = f"{kind}:{job.key}:{job.submit_attempts}"
        tx = self._txm.enqueue(key, self._address, data, max_cost=max_cost)
        self._ledger.mark_submitting(job, tx.id, f"{kind}Job")

    def _retry_or_close(self, job: Job, tx: Transaction) -> None:
        on_chain = self._chain.read_job(job.job_id)
        if not on_chain.status.open:
            self._close(job, on_chain.status)
            return
        self._retry(job, tx, tx.error or "reverted")

    def _retry(self, job: Job, tx: Transaction, why: str) -> None:
        attempts = job.submit_attempts + 1
        failing = tx.idempotency_key.startswith("fail:")
        detail = f"tx {tx.tx_hash or '-'}: {why}"[:500]
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


def _mined_ok(tx: Transaction) -> bool:
    return tx.status == TxStatus.CONFIRMED and bool(tx.succeeded)


def _same_request(terms: Terms, on_chain: OnChainJob) -> bool:
    """The job on-chain under this id is the request the ledger recorded (not another one a reorg
    gave the same id): while a job is open the chain stores the digest of its terms."""
    return on_chain.digest == terms.digest()


def _result(job: Job) -> bytes:
    """The small on-chain result the node's outcome carried (hex in the ledger; none: empty)."""
    return bytes.fromhex(job.result or "")


def _truncate(reason: str) -> str:
    data = reason.encode()
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


