"""Turns recorded jobs into Celery tasks, and collects their outcomes from the result backend.

Each dispatch is an *attempt* with its own task id (`chainId:contract:jobId:attempt`) and carries
the broker's epoch (see `BrokerEpoch`), so the reconciler can tell a job the broker lost from one
that is still queued.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis
from celery import Celery
from celery.result import AsyncResult

from bridge import metrics
from bridge.ledger import Job, JobState, Ledger
from bridge.logs import job_extra
from executor.celery_app import EXECUTE_JOB
from executor.locality import DataIndex, Placement, Supersession, input_roots, node_queue, place
from executor.nodes import NodeInfo, NodeRegistry, waiting_for
from executor.routing import queue_for
from executor.runner import JobOutcome
from executor.spec import JobSpec, SpecError, parse_spec

log = logging.getLogger(__name__)
EPOCH_KEY = "cod:broker-epoch"


class BrokerEpoch:
    """A random id kept in the broker's Redis. If Redis restarts without persistence it is gone:
    every task dispatched under the old epoch was lost with it and must be dispatched again."""

    def __init__(self, broker_url: str) -> None:
        self._redis = redis.Redis.from_url(broker_url, socket_timeout=5)

    def current(self) -> str:
        value = self._redis.get(EPOCH_KEY)
        if value is None:
            self._redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
            value = self._redis.get(EPOCH_KEY)
        assert value is not None
        return value.decode() if isinstance(value, bytes) else str(value)


class Dispatcher:
    def __init__(self, app: Celery, ledger: Ledger, epoch: BrokerEpoch, chain_id: int,
                 contract: str, locality: bool = True, max_attempts: int = 3) -> None:
        self._app = app
        self._max_attempts = max_attempts
        self._locality = locality
        broker_url = str(app.conf.broker_url)
        self._nodes = NodeRegistry(broker_url)
        self._data = DataIndex(broker_url)
        self._supersession = Supersession(broker_url)
        self._ledger = ledger
        self._epoch = epoch
        self._chain_id = chain_id
        self._contract = contract
        self._started: dict[str, float] = {}  # task id → when we first saw it started
        self._waiting: dict[str, str] = {}  # job key → reason last recorded

    def dispatch_pending(self) -> int:
        """Send every job in `requested` to the executors; a spec that fails validation is
        rejected here, without using a compute node."""
        jobs = self._ledger.jobs_in(self._chain_id, self._contract, JobState.REQUESTED, limit=500)
        if not jobs:
            return 0
        epoch = self._epoch.current()
        nodes = self._nodes.live()  # once per batch, not once per job
        for job in jobs:
            try:
                spec = parse_spec(job.spec)
            except SpecError as exc:
                self._ledger.update(job, "rejected", str(exc), state=JobState.REJECTED,
                                    reason=str(exc))
                continue
            wait = waiting_for(spec, nodes, time.time() - job.created_at)
            if wait is not None:
                if wait.expired:
                    self._ledger.update(job, "rejected", wait.reason, state=JobState.REJECTED,
                                        reason=wait.reason)
                elif self._waiting.get(job.key) != wait.reason:
                    self._ledger.update(job, "waiting", wait.reason)
                    self._waiting[job.key] = wait.reason
                continue
            self._waiting.pop(job.key, None)
            self.send(job, epoch, nodes=nodes)
        return len(jobs)

    def send(self, job: Job, epoch: str, near_data: bool = True,
             nodes: list[NodeInfo] | None = None) -> None:
        """Send a job's next attempt: to the node holding most of its input if there is one (and
        `near_data`), else to the general queue for its resources. `nodes`: the live nodes, if
        the caller has read them already."""
        spec = parse_spec(job.spec)
        placement = self._place(spec, nodes) if near_data and self._locality else None
        queue = node_queue(placement.node_id) if placement else queue_for(spec)
        attempt = job.attempts + 1
        task_id = f"{job.key}:{attempt}"
        self._app.send_task(EXECUTE_JOB, args=[job.key, job.spec], task_id=task_id, queue=queue)
        detail = f"routed to its data: {placement.describe()}" if placement else f"queue {queue}"
        self._ledger.mark_dispatched(job, attempt, task_id, epoch,
                                     routed_node=placement.node_id if placement else None,
                                     detail=detail)
        log.info("dispatched %s to %s", task_id, queue, **job_extra(job.key))  # type: ignore[arg-type]

    def reroute(self, job: Job, epoch: str, why: str) -> None:
        """Give up waiting for the node that holds the data: the job goes to the general queue
        (it will fetch its inputs), and the task sent to that node is marked superseded."""
        assert job.task_id is not None
        self._supersession.mark(job.task_id)
        self._ledger.add_event(job, "re-routed", why)
        self.send(job, epoch, near_data=False)

    def _place(self, spec: JobSpec, nodes: list[NodeInfo] | None) -> Placement | None:
        if not input_roots(spec):
            return None
        if nodes is None:
            nodes = self._nodes.live()
        return place(spec, nodes, self._data.holdings([n.node_id for n in nodes]))

    def collect(self) -> int:
        """Move jobs whose task finished to `executed` (or `rejected`); returns how many."""
        done = 0
        for job in self._ledger.jobs_in(self._chain_id, self._contract, JobState.DISPATCHED,
                                        limit=2000):
            assert job.task_id is not None
            result = AsyncResult(job.task_id, app=self._app)
            state = result.state
            if state == "STARTED":
                self._note_started(job, result)
                continue
            if state == "SUCCESS":
                self._note_started(job, result)
                self._record(job, JobOutcome(**result.result))
            elif state == "FAILURE":
                # the task crashed (not the job: a job's own problems come back as outcomes):
                # run it again, on whichever node, up to max_attempts, then fail it on-chain
                reason = f"executor error: {type(result.result).__name__}: {result.result}"
                self._ledger.finish_attempt(job.task_id, error=reason[:1000])
                if job.attempts < self._max_attempts:
                    self._ledger.add_event(job, "executor-error", reason[:500])
                    self.send(job, self._epoch.current(), near_data=False)
                else:
                    self._ledger.update(job, "rejected", reason, state=JobState.REJECTED,
                                        reason=reason[:500])
            else:
                continue
            self._started.pop(job.task_id, None)
            result.forget()
            done += 1
        return done

    def started_at(self, task_id: str) -> float | None:
        return self._started.get(task_id)

    def _note_started(self, job: Job, result: AsyncResult) -> None:
        assert job.task_id is not None
        if job.task_id in self._started:
            return
        self._started[job.task_id] = time.time()
        info = result.info if isinstance(result.info, dict) else {}
        host = str(info.get("hostname", "a worker"))
        if job.dispatched_at:
            metrics.QUEUE_LATENCY.observe(max(0.0, time.time() - job.dispatched_at))
        self._ledger.update(job, "running", f"on {host}", node=host)

    def _record(self, job: Job, outcome: JobOutcome) -> None:
        assert job.task_id is not None
        metrics.EXECUTION_TIME.observe(outcome.duration_s)
        self._ledger.finish_attempt(job.task_id, node=outcome.node, duration_s=outcome.duration_s,
                                    exit_code=outcome.exit_code, result_cid=outcome.result_cid,
                                    error=None if outcome.status == "completed" else outcome.reason)
        if outcome.status == "completed":
            detail = f"on {outcome.node}: exit {outcome.exit_code}, {outcome.result_cid}"
            if outcome.cached:
                detail += " (memoised: an identical job's result)"
            if outcome.inputs_local is not None:
                detail += (f"; inputs {'local' if outcome.inputs_local else 'not local'}, "
                           f"{outcome.input_bytes_fetched or 0} bytes fetched")
            self._ledger.update(job, "published", detail, state=JobState.EXECUTED,
                                node=outcome.node, result_cid=outcome.result_cid,
                                exit_code=outcome.exit_code, reason=outcome.reason)
        else:
            self._ledger.update(job, "rejected", f"on {outcome.node}: {outcome.reason}",
                                state=JobState.REJECTED, node=outcome.node, reason=outcome.reason)
