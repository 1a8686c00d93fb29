"""Celery tasks run by compute nodes."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import redis
from celery import Task

from executor.capacity import detect_capacity
from executor.celery_app import EXECUTE_JOB, app
from executor.config import WorkerSettings
from executor.engines.base import Engine, EngineUnavailable
from executor.engines.docker_engine import DockerEngine, Limits
from executor.engines.wasm_engine import WasmEngine
from executor.ipfs import IpfsUnavailable, KuboClient
from executor.locality import LocalityProbe, Supersession
from executor.publish.ipfs import IpfsPublisher
from executor.runner import JobRunner, NodePolicy, NotForThisNode
from executor.spec import parse_size
from executor.storage import StorageRegistry
from executor.storage.inline import InlineStorage
from executor.storage.ipfs import IpfsStorage
from executor.storage.url import UrlStorage

log = logging.getLogger(__name__)

MAX_OUTAGE_RETRIES = 20  # with backoff capped at 60 s: an outage of about 15 minutes is ridden out


def build_runner(settings: WorkerSettings) -> JobRunner:
    """A runner wired to this node's Kubo, Docker, wasmtime and Redis, per its settings."""
    from executor.cache import ResultCache

    settings.work_dir.mkdir(parents=True, exist_ok=True)
    kubo = KuboClient(settings.ipfs_api)
    log_bytes = parse_size(settings.log_limit)
    storage = StorageRegistry([
        IpfsStorage(kubo, settings.input_fetch_timeout_s),
        UrlStorage(parse_size(settings.url_max_size), settings.url_timeout_s),
        InlineStorage(),
    ])
    limits = Limits(pids=settings.pids_limit, log_bytes=log_bytes,
                    tmp_bytes=parse_size(settings.tmp_size))
    engines: dict[str, Engine] = {
        "docker": DockerEngine(pull_policy=settings.pull_policy, limits=limits),
        "wasm": WasmEngine(storage, log_bytes),
    }
    policy = NodePolicy(
        node_id=settings.node_id,
        capacity=detect_capacity(settings.cpus, settings.memory, settings.gpus),
        allow_network=settings.allow_network,
        max_output_bytes=parse_size(settings.max_output_size),
        log_bytes=log_bytes,
    )
    return JobRunner(engines, storage, IpfsPublisher(kubo, settings.publish_retry_s), policy,
                     settings.work_dir, ResultCache(settings.broker_url), LocalityProbe(kubo))


@cache
def _runner() -> JobRunner:
    """One runner per worker process, built on first use (after the fork)."""
    return build_runner(WorkerSettings())


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
        return {"job_key": job_key, "status": "superseded", "node": WorkerSettings().node_id}
    log.info("job %s: starting (attempt %s)", job_key, self.request.retries)
    try:
        outcome = _runner().run(job_key, spec, attempt=str(self.request.retries))
    except NotForThisNode as exc:
        log.info("job %s: %s: handing it back to the queue", job_key, exc)
        raise self.retry(countdown=5, max_retries=MAX_OUTAGE_RETRIES + 100) from exc
    log.info("job %s: %s %s", job_key, outcome.status, outcome.result_cid or outcome.reason)
    return outcome.to_dict()
