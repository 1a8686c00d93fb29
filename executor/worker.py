"""What a worker's main process does besides running tasks, hooked to Celery's worker signals.

- On start: unmount and remove what a killed earlier run left in the work directory (the Docker
  containers of that run are removed by `cod worker`, by the `cod.node` label).
- Every `heartbeat_interval_s`: write the node's heartbeat (queues, capacity, running jobs) and the
  CIDs its Kubo holds (for locality routing), and push
  back the visibility deadline of every job this worker holds (see `executor.celery_app`).
- On a clean stop: remove the heartbeat.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from celery import signals
from celery.worker import state

from executor.capacity import detect_capacity
from executor.config import WorkerSettings
from executor.locality import HoldingsScanner
from executor.volumes import clean_work_dir
from protocol.ipfs import IpfsError, KuboClient
from protocol.nodes import DataIndex, NodeInfo, NodeRegistry

log = logging.getLogger(__name__)

UNACKED_INDEX = "unacked_index"  # kombu's Redis transport: delivery tag → delivery time


class Heartbeat:
    def __init__(self, settings: WorkerSettings, concurrency: int) -> None:
        self._settings = settings
        self._registry = NodeRegistry(settings.broker_url)
        self._redis = redis.Redis.from_url(settings.broker_url, socket_timeout=5,
                                           socket_connect_timeout=5)
        self._capacity = detect_capacity(settings.cpus, settings.memory, settings.gpus)
        self._data = DataIndex(settings.broker_url)
        self._scanner = HoldingsScanner(KuboClient(settings.ipfs_api, timeout=10),
                                        settings.max_heartbeat_holdings)
        self._concurrency = concurrency
        self._started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cod-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self._registry.remove(self._settings.node_id)
            self._data.remove(self._settings.node_id)
        except redis.RedisError as exc:
            log.warning("could not remove the heartbeat: %s", exc)

    def _loop(self) -> None:
        interval = self._settings.heartbeat_interval_s
        while True:
            try:
                self.beat()
            except redis.RedisError as exc:  # the broker is down: the worker itself will notice
                log.warning("heartbeat failed: %s", exc)
            if self._stop.wait(interval):
                return

    def beat(self) -> None:
        held = list(state.reserved_requests) + list(state.scheduled_requests)
        running = sorted(r.id for r in state.active_requests)
        info = NodeInfo(
            node_id=self._settings.node_id,
            queues=self._settings.consumed_queues(),
            capacity=self._capacity,
            concurrency=self._concurrency,
            running=running,
            load_avg=round(os.getloadavg()[0], 2),
            started_at=self._started,
            seen_at=time.time(),
        )
        ttl = 3 * self._settings.heartbeat_interval_s
        self._registry.beat(info, ttl_s=ttl)
        if self._settings.publish_holdings:
            try:
                self._data.publish(self._settings.node_id, self._scanner.scan(), ttl_s=ttl)
            except IpfsError as exc:  # Kubo down: publish nothing; the entries expire
                log.warning("cannot list this node's data: %s", exc)
        tags = [tag for r in held if (tag := _delivery_tag(r)) is not None]
        if tags:
            # XX: only entries still unacknowledged; a finished job is not brought back
            self._redis.zadd(UNACKED_INDEX, dict.fromkeys(tags, time.time()), xx=True)


def _delivery_tag(request: Any) -> str | None:
    message = getattr(request, "message", None)
    tag = getattr(message, "delivery_tag", None)
    return None if tag is None else str(tag)


_heartbeat: Heartbeat | None = None


@signals.worker_init.connect
def _on_init(**_kwargs: Any) -> None:
    settings = WorkerSettings()
    settings.node_identity()  # before the pool forks: a key created now is the one all sign with
    removed = clean_work_dir(settings.work_dir)
    if removed:
        log.info("removed %d job director(ies) left by an earlier run", removed)


@signals.worker_ready.connect
def _on_ready(sender: Any = None, **_kwargs: Any) -> None:
    global _heartbeat
    controller = getattr(sender, "controller", None)
    concurrency = int(getattr(controller, "concurrency", 1) or 1)
    _heartbeat = Heartbeat(WorkerSettings(), concurrency)
    _heartbeat.start()
    log.info("heartbeat started for node %s", _heartbeat._settings.node_id)
    log.info("node %s signs its results as %s (register this address with the bridge: "
             "COD_NODE_ADDRESSES)", _heartbeat._settings.node_id,
             _heartbeat._settings.node_identity().address)


@signals.worker_shutdown.connect
def _on_shutdown(**_kwargs: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
