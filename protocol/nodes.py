"""The live compute nodes and what they hold, as the workers write them to Redis (the broker).

A worker writes its `NodeInfo` every few seconds with a time-to-live of three beats: a node that
stops beating (killed, partitioned) drops out of the list by itself. With each beat it also writes
the CIDs its Kubo has pinned and their sizes (`DataIndex`), which the bridge's placement reads.
The keys are in `protocol.keys`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from protocol.capacity import Capacity
from protocol.keys import DATA_PREFIX, NODE_PREFIX, SUPERSEDED_PREFIX, SUPERSEDED_TTL_S


def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)


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
        self._redis = _client(redis_url)

    def beat(self, info: NodeInfo, ttl_s: float) -> None:
        self._redis.set(NODE_PREFIX + info.node_id, info.to_json(), px=int(ttl_s * 1000))

    def remove(self, node_id: str) -> None:
        self._redis.delete(NODE_PREFIX + node_id)

    def live(self) -> list[NodeInfo]:
        """Every node whose heartbeat has not expired, by node id."""
        keys = sorted(self._redis.scan_iter(match=NODE_PREFIX + "*", count=500))
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


class DataIndex:
    """The holdings of every live node, in Redis."""

    def __init__(self, redis_url: str) -> None:
        self._redis = _client(redis_url)

    def publish(self, node_id: str, holdings: dict[str, int], ttl_s: float) -> None:
        self._redis.set(DATA_PREFIX + node_id, json.dumps(holdings), px=int(ttl_s * 1000))

    def remove(self, node_id: str) -> None:
        self._redis.delete(DATA_PREFIX + node_id)

    def holdings(self, node_ids: list[str]) -> dict[str, dict[str, int]]:
        if not node_ids:
            return {}
        values = self._redis.mget([DATA_PREFIX + n for n in node_ids])
        return {node: json.loads(v) for node, v in zip(node_ids, values, strict=True) if v}


class Supersession:
    """The bridge marks a task it has sent elsewhere; a worker that still receives it skips it."""

    def __init__(self, redis_url: str) -> None:
        self._redis = _client(redis_url)

    def mark(self, task_id: str) -> None:
        self._redis.set(SUPERSEDED_PREFIX + task_id, "1", ex=SUPERSEDED_TTL_S)

    def is_superseded(self, task_id: str) -> bool:
        return bool(self._redis.exists(SUPERSEDED_PREFIX + task_id))
