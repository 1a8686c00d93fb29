"""A periodic pass over the ledger that puts right what the happy path cannot see.

- **Broker lost its state** (Redis restarted without persistence): jobs dispatched under an older
  broker epoch are dispatched again.
- **Stalled jobs** (their worker died mid-job: the task stays `STARTED` for ever): a job running
  longer than its spec timeout plus a grace period is dispatched again, up to `max_attempts`, then
  failed on-chain with the reason.
- **Data node silent**: a job sent to the node holding its data that has not started there within
  `locality_wait_s` goes to the general queue (it will fetch its inputs).
- **Ended on-chain** (the requester cancelled after the deadline): in-flight jobs past their
  deadline are checked on-chain; a cancelled job stops being worked on (its task is revoked).
- **Lease lost** (v2): a job of ours past its lease end is checked on-chain; when another operator
  has taken it over (our lease lapsed: the contract slashed us), we stop working on it.
- Results computed but not submitted need nothing here: they stay `executed` in the ledger and the
  submitter picks them up, after any restart.
"""

from __future__ import annotations

import logging
import time

from bridge import metrics
from bridge.chain import JobStatus
from bridge.dispatcher import Dispatcher
from bridge.isolation import each_job
from bridge.ledger import Job, JobState, Ledger
from bridge.ports import ChainReader, Epoch, TaskQueue
from bridge.timeline import EventKind
from protocol.spec import SpecError, parse_spec

log = logging.getLogger(__name__)


class Reconciler:
    """`tasks`: to revoke a task (Celery); `chain`: the latest block and the jobs on-chain."""

    def __init__(self, tasks: TaskQueue, ledger: Ledger, dispatcher: Dispatcher, epoch: Epoch,
                 chain: ChainReader, chain_id: int, *, stall_grace_s: float = 60.0,
                 max_attempts: int = 3, interval_s: float = 5.0,
                 locality_wait_s: float = 30.0, operator: str | None = None) -> None:
        self._operator = operator  # our claiming address (v2); None: no claims to watch
        self._locality_wait = locality_wait_s
        self._tasks = tasks
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._epoch = epoch
        self._chain = chain
        self._chain_id = chain_id
        self._address = chain.address
        self._grace = stall_grace_s
        self._max_attempts = max_attempts
        self._interval = interval_s
        self._last_run = 0.0

    def maybe_run(self) -> None:
        if time.monotonic() - self._last_run >= self._interval:
            self.run()
            self._last_run = time.monotonic()

    def run(self) -> None:
        epoch = self._epoch.current()
        now = time.time()
        latest = self._chain.latest_timestamp()
        in_flight = self._ledger.jobs_in(self._chain_id, self._address, JobState.REQUESTED,
                                         JobState.CLAIMED, JobState.DISPATCHED, limit=5000)
        each_job(self._ledger, in_flight, "reconciling",
                 lambda job: self._reconcile_one(job, epoch, now, latest), self._dispatcher.reject)

    def _reconcile_one(self, job: Job, epoch: str, now: float, latest: int) -> None:
        if job.deadline < latest and self._ended_on_chain(job):
            return
        if self._lease_lost(job, latest):
            return
        if job.state != JobState.DISPATCHED:
            return
        if job.broker_epoch != epoch:
            self._redispatch(job, epoch, "broker-lost",
                             "the broker restarted without the job's task")
        elif self._data_node_silent(job, now):
            self._dispatcher.reroute(
                job, epoch, f"{job.routed_node} did not start it within "
                f"{self._locality_wait:.0f} s; sending it to any node (it will fetch its data)")
        elif self._stalled(job, now):
            self._redispatch(job, epoch, "stalled",
                             f"no outcome {self._grace:.0f} s after its timeout")

    def _data_node_silent(self, job: Job, now: float) -> bool:
        """A job sent to the node holding its data that has not started there in time (the node
        is busy, gone, or slow): locality must never cost availability."""
        return (job.routed_node is not None and job.dispatched_at is not None
                and job.started_at is None and now - job.dispatched_at > self._locality_wait)

    def _stalled(self, job: Job, now: float) -> bool:
        started = job.started_at
        if started is None:
            return False  # queued, not started: the queue timeout governs (not a stall)
        try:
            timeout = parse_spec(job.spec).timeout
        except SpecError:
            return False
        return now - started > timeout + self._grace

    def _redispatch(self, job: Job, epoch: str, why: str, detail: str) -> None:
        if job.attempts >= self._max_attempts:
            self._dispatcher.reject(job, f"gave up after {job.attempts} attempts: {detail}")
            return
        log.warning("job %s: %s; dispatching again", job.key, detail)
        metrics.REDISPATCHED.labels(why).inc()
        self._ledger.add_event(job, EventKind.REDISPATCH, detail)
        self._dispatcher.send(job, epoch)

    def _lease_lost(self, job: Job, latest: int) -> bool:
        """Past our lease end, another operator holds the job: it is theirs now."""
        if (self._operator is None or job.state == JobState.REQUESTED or job.lease_end is None
                or latest <= job.lease_end or job.replicas > 1):  # a slot: bridge.replication
            return False
        on_chain = self._chain.read_job(job.job_id)
        if on_chain.status != JobStatus.CLAIMED or on_chain.held_by(self._operator):
            return False  # still ours (nobody reclaimed it: we may still settle), or ended
        if job.task_id:
            self._tasks.revoke(job.task_id)
        self._ledger.mark_closed(job, f"our lease ended at {job.lease_end} and "
                                      f"{on_chain.claimer} took the job over")
        return True

    def _ended_on_chain(self, job: Job) -> bool:
        on_chain = self._chain.read_job(job.job_id)
        if on_chain.status.open:
            return False
        if job.task_id:
            self._tasks.revoke(job.task_id)
        self._ledger.mark_closed(job, f"ended on-chain: {on_chain.status.name}")
        return True
