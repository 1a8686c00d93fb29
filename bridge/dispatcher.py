"""Turns recorded jobs into Celery tasks, and collects their outcomes from the result backend."""

from __future__ import annotations

import logging
import time

from celery import Celery
from celery.result import AsyncResult

from bridge.ledger import Job, JobState, Ledger
from executor.celery_app import EXECUTE_JOB
from executor.nodes import waiting_reason
from executor.routing import queue_for
from executor.runner import JobOutcome
from executor.spec import SpecError, parse_spec

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, app: Celery, ledger: Ledger, chain_id: int, contract: str) -> None:
        self._app = app
        self._ledger = ledger
        self._chain_id = chain_id
        self._contract = contract
        self._waiting: dict[str, str] = {}  # job key → reason last recorded

    def dispatch_pending(self) -> int:
        """Send every job in `requested` to the executors; a spec that fails validation is
        rejected here, without using a compute node."""
        jobs = self._ledger.jobs_in(self._chain_id, self._contract, JobState.REQUESTED)
        for job in jobs:
            try:
                spec = parse_spec(job.spec)
            except SpecError as exc:
                self._ledger.update(job, "rejected", str(exc), state=JobState.REJECTED,
                                    reason=str(exc))
                continue
            wait = waiting_reason(spec, self._app.conf.broker_url, time.time() - job.created_at)
            if wait is not None:
                if wait.expired:
                    self._ledger.update(job, "rejected", wait.reason, state=JobState.REJECTED,
                                        reason=wait.reason)
                elif self._waiting.get(job.key) != wait.reason:
                    self._ledger.update(job, "waiting", wait.reason)
                    self._waiting[job.key] = wait.reason
                continue
            self._waiting.pop(job.key, None)
            attempt = job.attempts + 1
            task_id = f"{job.key}:{attempt}"
            self._app.send_task(EXECUTE_JOB, args=[job.key, job.spec], task_id=task_id,
                                queue=queue_for(spec))
            self._ledger.update(job, "queued", f"task {task_id}", state=JobState.DISPATCHED,
                                task_id=task_id, attempts=attempt)
        return len(jobs)

    def collect(self) -> int:
        """Move jobs whose task finished to `executed` (or `rejected`); returns how many."""
        done = 0
        for job in self._ledger.jobs_in(self._chain_id, self._contract, JobState.DISPATCHED,
                                        limit=1000):
            result = AsyncResult(job.task_id, app=self._app)
            if result.state == "SUCCESS":
                self._record(job, JobOutcome(**result.result))
            elif result.state == "FAILURE":
                reason = f"executor error: {type(result.result).__name__}: {result.result}"
                self._ledger.update(job, "rejected", reason, state=JobState.REJECTED,
                                    reason=reason[:500])
            else:
                continue
            result.forget()
            done += 1
        return done

    def _record(self, job: Job, outcome: JobOutcome) -> None:
        if outcome.status == "completed":
            detail = f"on {outcome.node}: exit {outcome.exit_code}, {outcome.result_cid}"
            self._ledger.update(job, "published", detail, state=JobState.EXECUTED,
                                node=outcome.node, result_cid=outcome.result_cid,
                                exit_code=outcome.exit_code, reason=outcome.reason)
        else:
            self._ledger.update(job, "rejected", f"on {outcome.node}: {outcome.reason}",
                                state=JobState.REJECTED, node=outcome.node, reason=outcome.reason)
