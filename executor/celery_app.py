"""The Celery application shared by the bridge (which sends tasks) and the workers (which run them).

Delivery settings, and why:
- `task_acks_late` + `task_reject_on_worker_lost`: a task is acknowledged only when it finished, so a
  worker killed mid-job hands the job back to the broker and another worker runs it. Jobs may thus run
  twice; the bridge makes the on-chain result exactly-once.
- `worker_prefetch_multiplier = 1`: a worker reserves one job per process, so a long job does not
  hold others hostage on a busy node.
- `visibility_timeout` (Redis): how long an unacknowledged task stays invisible before Redis hands it
  to another worker; it must exceed the longest job (spec timeouts are capped at 24 h).
"""

from __future__ import annotations

from celery import Celery

from executor.config import WorkerSettings
from executor.spec import MAX_TIMEOUT_S

JOBS_QUEUE = "cod.jobs"
EXECUTE_JOB = "cod.execute_job"  # task name: the bridge sends it, workers run it


def make_app(broker_url: str) -> Celery:
    app = Celery("cod", broker=broker_url, backend=broker_url, include=["executor.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=JOBS_QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        result_extended=True,
        broker_transport_options={"visibility_timeout": MAX_TIMEOUT_S + 3600},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_track_started=True,
    )
    return app


app = make_app(WorkerSettings().broker_url)
