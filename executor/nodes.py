"""The live compute nodes, from heartbeats each worker writes to Redis (the broker).

A worker writes `cod:node:<node id>` every few seconds with a time-to-live of three beats: a node
that stops beating (killed, partitioned) drops out of the list by itself. The bridge reads the list
to hold a job that no live node can serve (`unservable_reason`); `cod node list` prints it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import redis

from executor.capacity import Capacity
from executor.routing import class_queue, misfit, queue_for
from executor.spec import JobSpec

KEY_PREFIX = "cod:node:"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    queues: list[str]
    capacity: Capacity
    concurrency: int = 1
    running: list[str] = field(default_factory=list)  # task ids of the jobs running now
    load_avg: float = 0.0  # the host's 1-minute load average
    started_at: float = 0.0
    seen_at: float = 0.0

    def to_json(self) -> str:
        data = asdict(self)
        data["capacity"] = self.capacity.to_dict()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeInfo:
        data: dict[str, Any] = json.loads(text)
        data["capacity"] = Capacity.from_dict(data["capacity"])
        return cls(**data)


class NodeRegistry:
    def __init__(self, redis_url: str) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def beat(self, info: NodeInfo, ttl_s: float) -> None:
        self._redis.set(KEY_PREFIX + info.node_id, info.to_json(), px=int(ttl_s * 1000))

    def remove(self, node_id: str) -> None:
        self._redis.delete(KEY_PREFIX + node_id)

    def live(self) -> list[NodeInfo]:
        """Every node whose heartbeat has not expired, by node id."""
        keys = sorted(self._redis.scan_iter(match=KEY_PREFIX + "*", count=500))
        values = self._redis.mget(keys) if keys else []
        return [NodeInfo.from_json(v) for v in values if v is not None]

    def close(self) -> None:
        self._redis.close()


def list_nodes(redis_url: str) -> list[NodeInfo]:
    registry = NodeRegistry(redis_url)
    try:
        return registry.live()
    finally:
        registry.close()


def unservable_reason(spec: JobSpec, nodes: list[NodeInfo]) -> str | None:
    """Why no live node can run this job now (the job waits), or None if one can."""
    queue = queue_for(spec)
    serving = [n for n in nodes if queue in n.queues]
    if not serving:
        if spec.network != "none" and any(class_queue(spec.resources) in n.queues for n in nodes):
            return f"no live node accepts networked jobs (queue {queue})"
        need = f"{spec.resources.gpu} GPU(s)" if spec.resources.gpu else (
            f"{spec.resources.cpu:g} CPUs, {spec.resources.memory} memory")
        return f"no live node serves queue {queue} (the job needs {need})"
    misfits = [misfit(spec.resources, n.capacity) for n in serving]
    if all(misfits):
        return f"no live node on queue {queue} is large enough: the job needs {misfits[0]}"
    return None



@dataclass(frozen=True)
class Waiting:
    reason: str
    expired: bool  # the job's queue timeout has passed: fail it with `reason`


@cache
def _registry(redis_url: str) -> NodeRegistry:
    return NodeRegistry(redis_url)


def waiting_reason(spec: JobSpec, redis_url: str, waited_s: float) -> Waiting | None:
    """For the bridge, before it dispatches a job: None if a live node can serve it; else why it
    waits, and whether it has waited past its `queue_timeout`."""
    return waiting_for(spec, _registry(redis_url).live(), waited_s)


def waiting_for(spec: JobSpec, nodes: list[NodeInfo], waited_s: float) -> Waiting | None:
    """`waiting_reason` against a list of live nodes already read (one read per dispatch batch)."""
    reason = unservable_reason(spec, nodes)
    if reason is None:
        return None
    if waited_s > spec.queue_timeout:
        return Waiting(f"no node could run the job within its queue timeout of "
                       f"{spec.queue_timeout} s: {reason}", expired=True)
    return Waiting(reason, expired=False)
