"""Turns recorded jobs into Celery tasks, and collects their outcomes from the result backend.

Each dispatch is an *attempt* with its own task id (`chainId:contract:jobId:attempt`) and carries
the broker's epoch (see `BrokerEpoch`), so the reconciler can tell a job the broker lost from one
that is still queued.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import redis

from bridge import metrics
from bridge.claims import Claims
from bridge.isolation import OUTAGES, each_job
from bridge.ledger import Job, JobState, Ledger
from bridge.logs import job_extra
from bridge.placement import Placement, place, waiting_for
from bridge.ports import Epoch, NodeBoard, TaskQueue, TaskResult
from bridge.timeline import EventKind
from protocol.attestation import check_outcome
from protocol.nodes import NodeInfo
from protocol.outcome import JobOutcome, OutcomeStatus
from protocol.queues import node_queue, queue_for
from protocol.spec import JobSpec, SpecError, input_roots, parse_spec

log = logging.getLogger(__name__)
EPOCH_KEY = "cod:broker-epoch"
WAIT_RECHECK_S = 5.0  # a job no live node can serve is looked at again after this long
DISPATCH_BATCH = 500
COLLECT_BATCH = 2000


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
    """`tasks`: where tasks go and results come from (Celery); `nodes`: the live nodes and their
    holdings (the workers' heartbeats in Redis); `epoch`: the broker's (`BrokerEpoch`);
    `claims`: v2, a job is claimed on-chain before it is sent (None: sent as soon as it can run)."""

    def __init__(self, tasks: TaskQueue, nodes: NodeBoard, ledger: Ledger, epoch: Epoch,
                 chain_id: int, contract: str, locality: bool = True, max_attempts: int = 3,
                 trusted_nodes: frozenset[str] = frozenset(), claims: Claims | None = None
                 ) -> None:
        self._claims = claims
        self._trusted_nodes = trusted_nodes  # node-key addresses whose results count; none: no result
        if not trusted_nodes:
            log.error("no node addresses registered (COD_NODE_ADDRESSES): every result will be "
                      "refused; register each worker's address (it logs it at start)")
        self._tasks = tasks
        self._max_attempts = max_attempts
        self._locality = locality
        self._nodes = nodes
        self._ledger = ledger
        self._epoch = epoch
        self._chain_id = chain_id
        self._contract = contract
        self._waiting: dict[str, str] = {}  # job key → reason last recorded
        self._collect_after = 0  # collect pages through dispatched jobs, DISPATCH_BATCH at a time

    def dispatch_pending(self) -> int:
        """Send due jobs in `requested` to the executors, fairly across requesters; a spec that
        fails validation is rejected here, without using a compute node. A job no live node can
        serve waits (out of the window for `WAIT_RECHECK_S`), so it never holds back the rest.
        With claims, a job that can run is claimed first (its lease starts only then) and sent
        once the claim is confirmed (`claimed`).

        Each job is decided in its own error boundary, then the batch is sent over one broker
        connection and recorded `dispatched` in one ledger transaction (`_send_batch`)."""
        jobs = self._ledger.jobs_in(self._chain_id, self._contract, JobState.REQUESTED,
                                    JobState.CLAIMED, limit=DISPATCH_BATCH, fair=True)
        if not jobs:
            return 0
        epoch = self._epoch.current()
        board = _BatchBoard(self._nodes, self._nodes.live())  # once per batch, not once per job
        ready: list[_Outgoing] = []
        try:
            handled = each_job(self._ledger, jobs, "dispatching",
                               lambda job: self._decide(job, board, ready), self.reject)
        finally:  # jobs decided before an outage are still sent (as they were one by one)
            failed = self._send_batch(ready, epoch)
        return handled - failed

    def _decide(self, job: Job, board: _BatchBoard, ready: list[_Outgoing]) -> None:
        """Reject, defer, claim, or add the job's next attempt to `ready`."""
        try:
            spec = parse_spec(job.spec)
        except SpecError as exc:
            self.reject(job, str(exc))
            return
        wait = waiting_for(spec, board.nodes, time.time() - job.created_at)
        if wait is not None:
            if wait.expired:
                self._waiting.pop(job.key, None)
                self.reject(job, wait.reason)
                return
            if self._waiting.get(job.key) != wait.reason:
                self._ledger.note_waiting(job, wait.reason)
                self._waiting[job.key] = wait.reason
            self._ledger.defer(job, WAIT_RECHECK_S)
            return
        self._waiting.pop(job.key, None)
        if (self._claims is not None and job.state == JobState.REQUESTED
                and not self._claims.claim(job)):
            return  # sent once the claim is confirmed (or left to whoever holds it)
        ready.append(self._next_attempt(job, spec, board, near_data=True))

    def _send_batch(self, ready: list[_Outgoing], epoch: str) -> int:
        """Send `ready` in one pass over one connection, each task in its own error boundary,
        then record what was sent in one transaction. Returns how many could not be sent.

        Only a pass that ends is recorded: a batched sender sends when it ends, so after an
        outage none of the batch counts as sent and all of it is sent again under the same
        task ids (a duplicate delivery at worst, never a job recorded as sent that was not; a
        crash between sending and recording also leaves the jobs to be sent again)."""
        if not ready:
            return 0
        outgoing = {out.job.key: out for out in ready}
        sent: list[_Outgoing] = []
        with self._tasks.sending() as sender:
            def send_one(job: Job) -> None:
                out = outgoing[job.key]
                sender.send(out.task_id, out.queue, job.key, job.spec)
                sent.append(out)

            ok = each_job(self._ledger, [out.job for out in ready], "dispatching", send_one,
                          self.reject)
        self._record_sent(sent, epoch)
        return len(ready) - ok

    def _record_sent(self, sent: list[_Outgoing], epoch: str) -> None:
        try:
            self._ledger.mark_dispatched_many([out.row() for out in sent], epoch)
        except OUTAGES:
            raise
        except Exception:  # one job's row broke the batch: record each in its own boundary
            log.exception("recording %d dispatched jobs at once failed; recording each", len(sent))
            by_key = {out.job.key: out for out in sent}
            each_job(self._ledger, list(by_key[key].job for key in by_key), "dispatching",
                     lambda job: self._record_one(by_key[job.key], epoch), self.reject)
            return
        for out in sent:
            log.info("dispatched %s to %s", out.task_id, out.queue,
                     **job_extra(out.job.key))  # type: ignore[arg-type]

    def _record_one(self, out: _Outgoing, epoch: str) -> None:
        _, attempt, task_id, routed_node, detail = out.row()
        self._ledger.mark_dispatched(out.job, attempt, task_id, epoch, routed_node=routed_node,
                                     detail=detail)
        log.info("dispatched %s to %s", task_id, out.queue,
                 **job_extra(out.job.key))  # type: ignore[arg-type]

    def reject(self, job: Job, reason: str) -> None:
        """The job cannot be run: it goes to the submitter, which fails it on-chain with `reason`."""
        self._ledger.mark_rejected(job, reason)

    def send(self, job: Job, epoch: str, near_data: bool = True,
             nodes: list[NodeInfo] | None = None) -> None:
        """Send a job's next attempt: to the node holding most of its input if there is one (and
        `near_data`), else to the general queue for its resources. `nodes`: the live nodes, if
        the caller has read them already."""
        out = self._next_attempt(job, parse_spec(job.spec), _BatchBoard(self._nodes, nodes),
                                 near_data)
        self._tasks.send(out.task_id, out.queue, job.key, job.spec)
        self._record_one(out, epoch)

    def _next_attempt(self, job: Job, spec: JobSpec, board: _BatchBoard, near_data: bool
                      ) -> _Outgoing:
        placement = self._place(spec, board) if near_data and self._locality else None
        queue = node_queue(placement.node_id) if placement else queue_for(spec)
        attempt = job.attempts + 1
        return _Outgoing(job, attempt, f"{job.key}:{attempt}", queue, placement)

    def reroute(self, job: Job, epoch: str, why: str) -> None:
        """Give up waiting for the node that holds the data: the job goes to the general queue
        (it will fetch its inputs), and the task sent to that node is marked superseded."""
        assert job.task_id is not None
        self._nodes.mark_superseded(job.task_id)
        self._ledger.add_event(job, EventKind.RE_ROUTED, why)
        self.send(job, epoch, near_data=False)

    def _place(self, spec: JobSpec, board: _BatchBoard) -> Placement | None:
        if not input_roots(spec):
            return None
        return place(spec, board.nodes, board.holdings())

    def collect(self, task_ids: set[str] | None = None) -> int:
        """Move jobs whose task finished to `executed` (or `rejected`); returns how many.
        `task_ids`: only the jobs of these tasks (their results were pushed: `bridge.wake`);
        None pages through every dispatched job, so a large backlog is looked at in turn, not
        only its oldest part."""
        if task_ids is not None:
            jobs = self._ledger.jobs_with_tasks(self._chain_id, self._contract,
                                                JobState.DISPATCHED, task_ids)
        else:
            jobs = self._ledger.jobs_in(self._chain_id, self._contract, JobState.DISPATCHED,
                                        limit=COLLECT_BATCH, after_job_id=self._collect_after)
            self._collect_after = jobs[-1].job_id if len(jobs) == COLLECT_BATCH else 0
        done = [0]

        def collect_one(job: Job) -> None:
            done[0] += self._collect_one(job)

        each_job(self._ledger, jobs, "collecting", collect_one, self.reject)
        return done[0]

    def _collect_one(self, job: Job) -> bool:
        assert job.task_id is not None
        result = self._tasks.result(job.task_id)
        state = result.state
        if state == "STARTED":
            self._note_started(job, result)
            return False
        if state == "SUCCESS":
            self._note_started(job, result)
            # anyone with Redis access can write a result: only a registered node's signature,
            # bound to this task id and the job's spec, makes it count (protocol.attestation)
            verdict = check_outcome(job.task_id, result.result, self._trusted_nodes, spec=job.spec)
            why = verdict.reason
            if not why and verdict.fields.get("status") == OutcomeStatus.SUPERSEDED:  # a mark we never set
                why = "the node skipped it as superseded, but this task was not re-routed"
            if not why:
                self._ledger.add_event(job, EventKind.ATTESTED, f"signed by node key {verdict.signer}")
                self._record(job, JobOutcome.from_dict(verdict.fields))
            else:
                log.warning("job %s: untrusted result for %s: %s", job.key, job.task_id, why)
                self._ledger.fail_attempt(job.task_id, f"untrusted result: {why}"[:1000])
                if job.attempts < self._max_attempts:
                    self._ledger.add_event(job, EventKind.UNTRUSTED_RESULT, why[:500])
                    self.send(job, self._epoch.current(), near_data=False)
                else:
                    self.reject(job, "no result signed by a registered node")
        elif state == "FAILURE":
            # the task crashed (not the job: a job's own problems come back as outcomes):
            # run it again, on whichever node, up to max_attempts, then fail it on-chain
            reason = f"executor error: {type(result.result).__name__}: {result.result}"
            self._ledger.fail_attempt(job.task_id, reason[:1000])
            if job.attempts < self._max_attempts:
                self._ledger.add_event(job, EventKind.EXECUTOR_ERROR, reason[:500])
                self.send(job, self._epoch.current(), near_data=False)
            else:
                self.reject(job, reason[:500])
        else:
            return False
        result.forget()
        return True

    def _note_started(self, job: Job, result: TaskResult) -> None:
        """The current attempt's start, kept in the ledger (it survives a bridge restart)."""
        if job.started_at is not None:
            return
        info = result.info if isinstance(result.info, dict) else {}
        host = str(info.get("hostname", "a worker"))[:200]
        if job.dispatched_at:
            metrics.QUEUE_LATENCY.observe(max(0.0, time.time() - job.dispatched_at))
        self._ledger.mark_started(job, host, time.time())

    def _record(self, job: Job, outcome: JobOutcome) -> None:
        assert job.task_id is not None
        metrics.EXECUTION_TIME.observe(outcome.duration_s)
        completed = outcome.status is OutcomeStatus.COMPLETED
        self._ledger.finish_attempt(job.task_id, node=outcome.node, duration_s=outcome.duration_s,
                                    exit_code=outcome.exit_code, result_cid=outcome.result_cid,
                                    error=None if completed else outcome.reason)
        if completed:
            detail = f"on {outcome.node}: exit {outcome.exit_code}, {outcome.result_cid}"
            if outcome.cached:
                detail += " (memoised: an identical job's result)"
            if outcome.inputs_local is not None:
                detail += (f"; inputs {'local' if outcome.inputs_local else 'not local'}, "
                           f"{outcome.input_bytes_fetched or 0} bytes fetched")
            self._ledger.mark_executed(job, outcome.node, outcome.result_cid, outcome.exit_code,
                                       outcome.reason, detail, result=outcome.result)
        else:
            self._ledger.mark_run_failed(job, outcome.node, outcome.reason)


@dataclass(frozen=True)
class _Outgoing:
    """A job's next attempt, decided and not yet recorded as sent."""

    job: Job
    attempt: int
    task_id: str  # `chainId:contract:jobId:attempt`: sent twice, it is still one task
    queue: str
    placement: Placement | None

    def row(self) -> tuple[Job, int, str, str | None, str]:
        """What `Ledger.mark_dispatched_many` records: job, attempt, task id, node, detail."""
        placement = self.placement
        detail = f"routed to its data: {placement.describe()}" if placement else f"queue {self.queue}"
        return (self.job, self.attempt, self.task_id, placement.node_id if placement else None,
                detail)


class _BatchBoard:
    """The live nodes and their holdings as one dispatch batch sees them: each read from the
    board at most once (the holdings only if a job of the batch has IPFS inputs)."""

    def __init__(self, board: NodeBoard, nodes: list[NodeInfo] | None) -> None:
        self._board = board
        self._nodes = nodes
        self._holdings: dict[str, dict[str, int]] | None = None

    @property
    def nodes(self) -> list[NodeInfo]:
        if self._nodes is None:
            self._nodes = self._board.live()
        return self._nodes

    def holdings(self) -> dict[str, dict[str, int]]:
        if self._holdings is None:
            self._holdings = self._board.holdings([n.node_id for n in self.nodes])
        return self._holdings
