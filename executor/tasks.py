"""Celery tasks run by compute nodes."""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

import redis
from celery import Task, signals

from executor.capacity import detect_capacity
from executor.celery_app import app
from executor.config import WorkerSettings
from executor.engines import build_engines
from executor.engines.base import EngineUnavailable
from executor.input_cache import InputCache
from executor.locality import LocalityProbe
from executor.publish.ipfs import IpfsPublisher
from executor.retention import published_results  # also: the retention sweep's worker signals
from executor.runner import JobRunner, NodePolicy, NotForThisNode
from executor.storage import build_storage
from executor.storage.url import egress_policy  # noqa: F401  (was defined here)
from executor.volume_pool import VolumePool
from executor.volumes import INPUT_CACHE
from protocol.attestation import SIGNATURE_FIELD, NodeIdentity, sign_outcome
from protocol.ipfs import IpfsUnavailable, KuboClient
from protocol.messaging import EXECUTE_JOB
from protocol.nodes import Supersession
from protocol.outcome import OutcomeStatus
from protocol.spec import parse_size

log = logging.getLogger(__name__)

MAX_OUTAGE_RETRIES = 20  # with backoff capped at 60 s: an outage of about 15 minutes is ridden out


def build_runner(settings: WorkerSettings) -> JobRunner:
    """A runner wired to this node's Kubo, Docker, wasmtime and Redis, per its settings."""
    from executor.cache import ResultCache

    settings.work_dir.mkdir(parents=True, exist_ok=True)
    kubo = KuboClient(settings.ipfs_api)
    log_bytes = parse_size(settings.log_limit)
    storage = build_storage(settings, kubo)  # one provider per registered source scheme
    engines = build_engines(settings, storage)  # one engine per registered engine name
    policy = NodePolicy(
        node_id=settings.node_id,
        capacity=detect_capacity(settings.cpus, settings.memory, settings.gpus),
        allow_network=settings.allow_network,
        max_output_bytes=parse_size(settings.max_output_size),
        log_bytes=log_bytes,
        max_input_bytes=parse_size(settings.max_input_size),
        max_input_files=settings.max_input_files,
        max_output_files=settings.max_output_files,
        max_output_depth=settings.max_output_depth,
    )
    publisher = IpfsPublisher(kubo, settings.publish_retry_s, settings.max_output_depth,
                              published_results(settings) if settings.result_retention_s > 0 else None)
    cache_bytes = parse_size(settings.input_cache_size)
    input_cache = InputCache(settings.input_cache_dir or settings.work_dir / INPUT_CACHE,
                             cache_bytes) if cache_bytes > 0 else None
    pool = VolumePool(settings.work_dir / "volume-pool" / str(os.getpid()),
                      settings.result_volume_pool) if settings.result_volume_pool > 0 else None
    return JobRunner(engines, storage, publisher, policy,
                     settings.work_dir, ResultCache.for_node(settings), LocalityProbe(kubo),
                     input_cache, pool)


@cache
def _runner() -> JobRunner:
    """One runner per worker process, built on first use (after the fork)."""
    return build_runner(WorkerSettings())


@signals.worker_process_shutdown.connect
def _close_runner(**_kwargs: Any) -> None:
    """Unmount this process's pooled result volumes (a killed worker's: `clean_work_dir`)."""
    if _runner.cache_info().currsize:
        _runner().close()


@cache
def _supersession() -> Supersession:
    return Supersession(WorkerSettings().broker_url)


@app.task(
    name=EXECUTE_JOB,
    bind=True,
    # outages of Kubo, Docker or Redis (the cache, the supersession marks) delay a job, not fail it
    autoretry_for=(IpfsUnavailable, EngineUnavailable, redis.ConnectionError, redis.TimeoutError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=MAX_OUTAGE_RETRIES,
)
def execute_job(self: Task, job_key: str, spec: str) -> dict[str, Any]:
    """Run one job; returns a `JobOutcome` as a dict. Outages (IPFS, Docker) are retried with
    backoff; a problem with the job itself returns a `failed` outcome with the reason."""
    if self.request.id and _supersession().is_superseded(self.request.id):
        log.info("job %s: task %s was re-routed by the bridge; skipping it", job_key,
                 self.request.id)
        return _signed(self.request.id, spec, {"job_key": job_key, "status": str(OutcomeStatus.SUPERSEDED),
                                                "node": WorkerSettings().node_id})
    attempt = attempt_of(self.request.id, self.request.retries)
    log.info("job %s: starting (attempt %s)", job_key, attempt)
    try:
        outcome = _runner().run(job_key, spec, attempt=attempt)
    except NotForThisNode as exc:
        log.info("job %s: %s: handing it back to the queue", job_key, exc)
        raise self.retry(countdown=5, max_retries=MAX_OUTAGE_RETRIES + 100) from exc
    log.info("job %s: %s %s", job_key, outcome.status, outcome.result_cid or outcome.reason)
    return _signed(self.request.id, spec, outcome.to_dict())


@cache
def _identity() -> NodeIdentity:
    return WorkerSettings().node_identity()


def _signed(task_id: str | None, spec: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The outcome with this node's signature, bound to the task id (job key and attempt) and the
    spec run: the bridge counts only results signed by a registered node key."""
    signature = sign_outcome(_identity().key, task_id or "", fields, spec=spec)
    return {**fields, SIGNATURE_FIELD: signature}


def attempt_of(task_id: str | None, retries: int) -> str:
    """The bridge's attempt number, the last part of its task id (`{job_key}:{attempt}`): two
    attempts of one job on one node get their own directory and container. Celery's retry count
    for a task sent otherwise."""
    suffix = (task_id or "").rpartition(":")[2]
    return suffix if suffix.isdigit() and ":" in (task_id or "") else str(retries)
