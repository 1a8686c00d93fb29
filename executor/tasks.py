"""Celery tasks run by compute nodes."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import Task

from executor.celery_app import EXECUTE_JOB, app
from executor.config import WorkerSettings
from executor.engines.base import EngineUnavailable
from executor.engines.docker_engine import DockerEngine
from executor.ipfs import IpfsUnavailable, KuboClient
from executor.runner import JobRunner

log = logging.getLogger(__name__)



@cache
def _runner() -> JobRunner:
    """One runner per worker process, built on first use (after the fork)."""
    settings = WorkerSettings()
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    return JobRunner(
        kubo=KuboClient(settings.ipfs_api),
        engine=DockerEngine(pull_policy=settings.pull_policy),
        work_dir=settings.work_dir,
        node_id=settings.node_id,
        input_fetch_timeout_s=settings.input_fetch_timeout_s,
    )


@app.task(
    name=EXECUTE_JOB,
    bind=True,
    autoretry_for=(IpfsUnavailable, EngineUnavailable),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def execute_job(self: Task, job_key: str, spec: str) -> dict[str, Any]:
    """Run one job; returns a `JobOutcome` as a dict. Outages (IPFS, Docker) are retried with
    backoff; a problem with the job itself returns a `failed` outcome with the reason."""
    log.info("job %s: starting (attempt %s)", job_key, self.request.retries)
    outcome = _runner().run(job_key, spec, attempt=str(self.request.retries))
    log.info("job %s: %s %s", job_key, outcome.status, outcome.result_cid or outcome.reason)
    return outcome.to_dict()
