"""How the bridge and the workers talk through Celery: the task name, the default queue, and the
delivery settings both sides use (the bridge sends tasks, the workers run them).

Delivery settings, and why (docs/operators.md explains them for operators):
- `task_acks_late` + `task_reject_on_worker_lost`: a task is acknowledged only when it finished, so a
  worker process killed mid-job hands the job back to the broker and another worker runs it. Jobs may
  thus run twice; the bridge makes the on-chain result exactly-once.
- `worker_prefetch_multiplier = 1`: a worker reserves one job per process, so a long job does not
  hold others hostage on a busy node.
- `visibility_timeout` (Redis): an unacknowledged task whose worker is gone is handed to another
  worker after this long. A live worker keeps its running jobs' deadlines fresh with every
  heartbeat (`executor.worker`), so a job may run far longer than the timeout without a second
  delivery, while a killed node's jobs come back within about `visibility_timeout`.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from protocol.queues import CPU_QUEUE

JOBS_QUEUE = CPU_QUEUE  # where a task sent without a queue goes
EXECUTE_JOB = "cod.execute_job"  # task name: the bridge sends it, workers run it; args (job_key, spec)


def make_app(broker_url: str, visibility_timeout_s: int = 300) -> Celery:
    """The app the bridge sends tasks with (and reads results from)."""
    app = Celery("cod")
    app.conf.update(celery_config(broker_url, visibility_timeout_s))
    return app


def celery_config(broker_url: str, visibility_timeout_s: int = 300) -> dict[str, Any]:
    """The settings both sides use; the workers' app is built with them too (`executor.celery_app`)."""
    return dict(
        broker_url=broker_url,
        result_backend=broker_url,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=JOBS_QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        result_extended=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            # look for the tasks of dead workers every tenth of the timeout (≤ 10 s)
            "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_track_started=True,
    )
