"""One job's failure is that job's failure: the error boundary every bridge step runs each job in.

An outage (the RPC, Redis, the ledger's database unreachable) is not a job's fault: it is raised to
the loop, which retries the whole step with backoff. Anything else a job makes a step raise — a
spec, a consumer or a value a stranger chose that the code did not expect — is recorded on that
job, which is backed off and, after `max_errors`, given up on (settled on-chain with the reason, or
abandoned), while the step goes on with the next job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import kombu.exceptions
import redis
import requests
import sqlalchemy.exc

from bridge import metrics
from bridge.ledger import Job, Ledger
from bridge.logs import job_extra

log = logging.getLogger(__name__)

MAX_JOB_ERRORS = 5

OUTAGES: tuple[type[BaseException], ...] = (
    requests.ConnectionError, requests.Timeout, redis.ConnectionError, redis.TimeoutError,
    kombu.exceptions.OperationalError, sqlalchemy.exc.OperationalError, ConnectionError,
    TimeoutError,
)


def each_job(ledger: Ledger, jobs: Iterable[Job], step: str, handle: Callable[[Job], object],
             give_up: Callable[[Job, str], None], max_errors: int = MAX_JOB_ERRORS) -> int:
    """Run `handle` on each job inside its own boundary; returns how many were handled."""
    handled = 0
    for job in jobs:
        try:
            handle(job)
            handled += 1
        except OUTAGES:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            metrics.JOB_ERRORS.labels(step).inc()
            log.warning("job %s: %s failed: %s", job.key, step, error, exc_info=True,
                        **job_extra(job.key))  # type: ignore[arg-type]
            try:
                if ledger.note_error(job, step, error, max_errors):
                    give_up(job, f"internal error while {step} (after {max_errors} tries): "
                                 f"{error}")
            except OUTAGES:
                raise
            except Exception:  # the boundary itself must hold
                log.exception("job %s: could not record its error", job.key)
    return handled
