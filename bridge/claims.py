"""Claims (JobManager v2): the bridge's operator key claims a job before anything runs it.

A claim is one `claimJob(jobId, terms)` transaction through the `TxManager`; the job is dispatched
(or, when it was rejected, failed) only once that claim is confirmed, so in the normal case no job
runs on two operators. What the chain says decides, read before every claim:

- settled or cancelled, or another request under the id (the terms digest differs): closed here;
- already ours (a claim confirmed before a restart): recorded as claimed, nothing sent;
- held by another operator with a live lease: skipped, and looked at again just after the lease
  end (if that operator lapses, we may reclaim it; the contract slashes the lapsed one);
- otherwise claimed; a claim that does not go through (a race lost: `JobManagerCannotClaim`, or the
  slot taken meanwhile) backs off, doubling, and after `MAX_CLAIM_ATTEMPTS` the job is left to the
  others (closed here).

Replicated jobs (replicas > 1): the same call claims a free slot (or one whose lease lapsed); we
hold at most one slot of a job, and a job we once let lapse is closed here (the contract bars us
from it). Once ours, the job runs as any other and `bridge.replication` commits and reveals it.

A key that cannot claim (not registered, exiting, stake below the minimum) claims nothing: jobs
wait, and the reason is logged when it changes (`standing`, read at most every `STANDING_TTL_S`).

Turns: with n registered operators, job `j`'s slot `s` is the turn of operator index
`(j + s) mod n + 1`. An operator claims at once the jobs whose turn is its own and any other only
`grace_s` after it saw the request, by which time the one whose turn it is has claimed it (and
the read before our claim sees that). So in the normal case the work spreads across operators
without claim races, and a job whose operator is down or busy waits `grace_s`, not a lease.
"""

from __future__ import annotations

import logging
import time

from bridge.chain import JobStatus, OnChainJob, ReplicaSlot, ReplicaState
from bridge.isolation import each_job
from bridge.ledger import Job, JobState, Ledger, TxStatus
from bridge.ports import SettlementChain, TxQueue
from bridge.terms import Terms
from bridge.timeline import EventKind

log = logging.getLogger(__name__)

MAX_CLAIM_ATTEMPTS = 5
LOST_BACKOFF_S = 5.0  # after a lost race: 5 s, 10 s, 20 s, … (capped at LOST_BACKOFF_MAX_S)
LOST_BACKOFF_MAX_S = 300.0
LEASE_MARGIN_S = 2.0  # look again this long after another's lease end (chain and wall clocks)
CLOCK_TTL_S = 1.0  # the chain's time is read at most once a second (not once per job)
CONFIRM_BATCH = 500
STANDING_TTL_S = 30.0  # our operator record is read again after this long
INELIGIBLE_WAIT_S = 30.0  # a job is looked at again this long after we could not claim it


class Claims:
    """`chain`: the jobs on-chain and the claim call; `txm`: where the claim is recorded to be
    sent; `operator`: the address of the key the `TxManager` signs with (ours)."""

    def __init__(self, chain: SettlementChain, txm: TxQueue, ledger: Ledger, chain_id: int,
                 operator: str, grace_s: float = 3.0) -> None:
        self._grace_s = grace_s
        self._chain = chain
        self._txm = txm
        self._ledger = ledger
        self._chain_id = chain_id
        self._address = chain.address
        self.operator = operator
        self._clock: tuple[float, int] = (0.0, 0)  # (read at, monotonic) → chain timestamp
        self._standing: tuple[float, str | None] = (-STANDING_TTL_S, None)  # (read at, why not)
        self._turns: tuple[int, int] = (0, 0)  # (our operator index, operator count) when read
        self._turns_read_at = 0.0  # wall clock (as `Job.created_at`) of that read
        self._low = False  # warned that one more slash stops our claims

    # -- claiming ----------------------------------------------------------------------------------
    def claim(self, job: Job, on_chain: OnChainJob | None = None) -> bool:
        """Record a claim of `job` (state `claiming`), or settle what the chain says instead.
        Returns True when the job is now held by us (nothing to wait for)."""
        if on_chain is None:
            on_chain = self._chain.read_job(job.job_id)
        terms = Terms.from_row(job)
        now = self.chain_time()
        if self._ended(job, on_chain, terms):
            return False
        if terms.replicas > 1:
            slots = self._chain.read_replicas(job.job_id, terms.replicas)
            if not self._may_take_slot(job, on_chain, slots, now):
                return self._ours(slots) is not None
        else:
            if on_chain.held_by(self.operator):
                self._ledger.mark_claimed(job, on_chain.lease_end,
                                          f"already ours on-chain, lease until {on_chain.lease_end}")
                return True
            if on_chain.held_by_other(self.operator, now):
                self._held_elsewhere(job, on_chain.claimer, on_chain.lease_end, now, tried=False)
                return False
            if on_chain.status == JobStatus.CLAIMED and self._barred(job):
                return False
        if terms.restricted and not self._chain.may_claim(job.job_id, self.operator):
            self._ledger.mark_closed(job, "only the claimers its request names may claim it, "
                                          "and we are not one of them")
            return False
        if now > terms.deadline:
            self._ledger.mark_closed(job, "its deadline passed before we could claim it (the "
                                          "requester can cancel it for a refund)")
            return False
        # The turns are read again when they were read before we saw the request: a read at start,
        # before the others registered, would otherwise make every job ours and every claim a race.
        why_not = self.standing(fresh=self._turns_read_at <= job.created_at)
        if why_not is not None:
            self._ledger.defer(job, INELIGIBLE_WAIT_S)
            return False
        wait = self._turn_wait(job)
        if wait > 0:
            self._ledger.defer(job, wait)  # its operator's turn: ours after the grace
            return False
        key = f"claim:{job.key}:{job.claim_attempts}"
        tx = self._txm.enqueue(key, self._address, self._chain.claim_calldata(job.job_id, terms))
        self._ledger.mark_claiming(job, tx.id)
        return False

    def _ended(self, job: Job, on_chain: OnChainJob, terms: Terms) -> bool:
        """The chain has ended the job, or the id holds another request: closed here."""
        if on_chain.status == JobStatus.NONE:
            self._ledger.mark_closed(job, "no such job on-chain (request reorged out?)")
        elif not on_chain.status.open:
            state = {JobStatus.COMPLETED: JobState.COMPLETED,
                     JobStatus.FAILED: JobState.FAILED}.get(on_chain.status, JobState.CLOSED)
            self._ledger.mark_closed(job, f"on-chain status is {on_chain.status.name}", state)
        elif on_chain.digest != terms.digest():
            self._ledger.mark_closed(job, "the job on-chain under this id is another request")
        else:
            return False
        return True

    def _may_take_slot(self, job: Job, on_chain: OnChainJob, slots: list[ReplicaSlot],
                       now: int) -> bool:
        """A replicated job: whether we may claim a slot of it now (else recorded why not)."""
        mine = self._ours(slots)
        if mine is not None:
            self._ledger.mark_claimed(job, mine.lease_end,
                                      f"a replica slot is already ours, lease until {mine.lease_end}")
            return False
        if on_chain.status != JobStatus.REQUESTED and on_chain.status != JobStatus.CLAIMED:
            self._ledger.mark_closed(job, "its reveal phase is open: no replica slot to claim")
            return False
        if self._barred(job):
            return False
        if any(slot.state == ReplicaState.EMPTY or slot.lapsed(now) for slot in slots):
            return True
        live = [slot for slot in slots if slot.state == ReplicaState.CLAIMED]
        if not live:
            self._ledger.mark_closed(job, f"all {len(slots)} replica slots are committed")
            return False
        first = min(live, key=lambda slot: slot.lease_end)
        self._held_elsewhere(job, first.operator, first.lease_end, now, tried=False)
        return False

    def _ours(self, slots: list[ReplicaSlot]) -> ReplicaSlot | None:
        return next((slot for slot in slots if slot.held_by(self.operator)), None)

    def _barred(self, job: Job) -> bool:
        """We let a lease on this job lapse before: the contract will not let us claim it again."""
        if not self._chain.has_lapsed(job.job_id, self.operator):
            return False
        self._ledger.mark_closed(job, "our lease on it lapsed before: the contract bars us from "
                                      "claiming it again")
        return True

    def standing(self, fresh: bool = False) -> str | None:
        """Why our key cannot claim now (not registered, exiting, stake below the minimum), or
        None; read at most every `STANDING_TTL_S` (unless `fresh`), logged when it changes. Warns
        (once) when one more slash would take the stake below the minimum."""
        read_at, why_not = self._standing
        if not fresh and time.monotonic() - read_at < STANDING_TTL_S:
            return why_not
        self._turns_read_at = time.time()
        standing = self._chain.operator_standing(self.operator)
        self._turns = (standing.record.index, standing.operators)
        why_not = None if standing.can_claim else standing.verdict()
        if why_not != self._standing[1]:
            if why_not is None:
                log.info("operator %s may claim jobs", self.operator)
            else:
                log.error("operator %s cannot claim jobs: %s", self.operator, why_not)
        low = why_not is None and standing.low
        if low and not self._low:
            log.warning("operator %s: stake %d wei; one more slash of %d wei takes it below the "
                        "%d wei minimum (claims then stop): add stake", self.operator,
                        standing.record.stake, standing.max_penalty, standing.min_stake)
        self._low = low
        self._standing = (time.monotonic(), why_not)
        return why_not

    def _turn_wait(self, job: Job) -> float:
        """Seconds until we may claim `job` when it is not our turn (0: claim now)."""
        index, count = self._turns
        if count <= 1 or self._grace_s <= 0:
            return 0.0
        turns = {(job.job_id + slot) % count + 1 for slot in range(job.replicas)}
        if index in turns:
            return 0.0
        return max(0.0, job.created_at + self._grace_s - time.time())

    def _held_elsewhere(self, job: Job, claimer: str, lease_end: int, now: int, tried: bool
                        ) -> None:
        wait = max(0, lease_end - now) + LEASE_MARGIN_S
        self._ledger.mark_unclaimed(
            job, EventKind.HELD_ELSEWHERE,
            f"claimed by {claimer} until {lease_end}; looked at again then",
            retry_in_s=wait, tried=tried)

    # -- confirming --------------------------------------------------------------------------------
    def confirm(self) -> int:
        """Move `claiming` jobs whose claim is mined to `claimed` (or back, backed off, when it
        did not go through); returns how many moved."""
        jobs = self._ledger.jobs_in(self._chain_id, self._address, JobState.CLAIMING,
                                    limit=CONFIRM_BATCH)
        moved = [0]

        def confirm_one(job: Job) -> None:
            moved[0] += self._confirm(job)

        each_job(self._ledger, jobs, "claiming", confirm_one, self._give_up)
        return moved[0]

    def _confirm(self, job: Job) -> bool:
        assert job.claim_tx_id is not None
        tx = self._txm.get(job.claim_tx_id)
        assert tx is not None
        if tx.status not in (TxStatus.CONFIRMED, TxStatus.FATAL):
            return False
        on_chain = self._chain.read_job(job.job_id)
        if self._ended(job, on_chain, Terms.from_row(job)):
            return True
        lease_end = self._our_lease(job, on_chain)
        if lease_end is not None:  # ours (maybe through a replacement of the tx)
            self._ledger.mark_claimed(job, lease_end,
                                      f"lease until {lease_end} (tx {tx.tx_hash})")
            return True
        now = self.chain_time()
        if job.replicas == 1 and on_chain.held_by_other(self.operator, now):
            self._held_elsewhere(job, on_chain.claimer, on_chain.lease_end, now, tried=True)
            return True
        attempts = job.claim_attempts + 1
        detail = f"tx {tx.tx_hash or '-'}: {tx.error or 'reverted'}"[:500]
        if attempts >= MAX_CLAIM_ATTEMPTS:
            self._ledger.mark_closed(job, f"could not claim it after {attempts} tries (last: "
                                          f"{detail}); left to other operators")
            return True
        backoff = min(LOST_BACKOFF_S * 2 ** (attempts - 1), LOST_BACKOFF_MAX_S)
        self._ledger.mark_unclaimed(job, EventKind.CLAIM_LOST,
                                    f"{detail}; trying again in {backoff:.0f} s",
                                    retry_in_s=backoff, tried=True)
        return True

    def _our_lease(self, job: Job, on_chain: OnChainJob) -> int | None:
        """The lease end of our claim on `job` (its slot, if replicated), or None if not ours."""
        if job.replicas == 1:
            return on_chain.lease_end if on_chain.held_by(self.operator) else None
        mine = self._ours(self._chain.read_replicas(job.job_id, job.replicas))
        return mine.lease_end if mine is not None else None

    def _give_up(self, job: Job, reason: str) -> None:
        log.error("job %s: claim given up: %s", job.key, reason)
        self._ledger.mark_closed(job, reason)

    def chain_time(self) -> int:
        """The latest block's timestamp, read at most once per `CLOCK_TTL_S`."""
        read_at, value = self._clock
        if time.monotonic() - read_at >= CLOCK_TTL_S:
            value = self._chain.latest_timestamp()
            self._clock = (time.monotonic(), value)
        return value
