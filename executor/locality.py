"""Code goes to the data: which node holds which input, and where a job should run.

Each node publishes the CIDs its Kubo has pinned (and their sizes) into Redis with every heartbeat
(`cod:data:<node id>`, expiring with the heartbeat, so a node that disappears takes its entries
with it). The bridge scores every live node able to run a job by the bytes of the job's IPFS inputs
it already holds, and sends the job to the best node's own queue (`cod.node.<node id>`); a job with
no holder goes to the general queue for its resources. Pins are what a node holds *on purpose*
(operators pin datasets with `cod data pin`; results a node published are pinned too, so the next
stage of a chain tends to run where the previous one did).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import redis

from executor.ipfs import IpfsError, KuboClient
from executor.nodes import NodeInfo
from executor.routing import misfit, queue_for
from executor.spec import JobSpec

log = logging.getLogger(__name__)

DATA_PREFIX = "cod:data:"
SUPERSEDED_PREFIX = "cod:superseded:"  # a task the bridge re-routed: whoever gets it skips it
NODE_QUEUE_PREFIX = "cod.node."
STATS_PER_SCAN = 200  # new pins sized per heartbeat
_ROOT = re.compile(r"^ipfs://([A-Za-z0-9]+)")


def node_queue(node_id: str) -> str:
    """The queue only `node_id` consumes: jobs sent to the data it holds."""
    return NODE_QUEUE_PREFIX + node_id


def input_roots(spec: JobSpec) -> list[str]:
    """The root CIDs of a job's IPFS inputs (`ipfs://CID/sub/path` counts as CID)."""
    roots = []
    for source in spec.inputs:
        match = _ROOT.match(source.source)
        if match:
            roots.append(match.group(1))
    return roots


class HoldingsScanner:
    """What this node's Kubo holds: pinned CIDs and their sizes (a CID's size never changes, so
    each is measured once). At most `limit` of them, the largest: a heartbeat does not grow with
    the pin set (the large holdings are what routing to data is worth)."""

    def __init__(self, kubo: KuboClient, limit: int = 1000) -> None:
        self._kubo = kubo
        self._limit = limit
        self._sizes: dict[str, int] = {}

    def scan(self) -> dict[str, int]:
        holdings = {}
        pinned = self._kubo.pinned()
        still = set(pinned)
        self._sizes = {cid: size for cid, size in self._sizes.items() if cid in still}
        budget = STATS_PER_SCAN  # a beat is not held up by a large new pin set: the rest next time
        for cid in pinned:
            if cid not in self._sizes:
                if budget <= 0:
                    continue
                budget -= 1
                try:
                    stat = self._kubo.stat(cid, timeout_s=5)
                    # a file's own size; a directory's, with its content (and UnixFS overhead)
                    self._sizes[cid] = stat.size if stat.type == "file" else stat.cumulative_size
                except IpfsError as exc:
                    log.info("cannot size pinned %s: %s", cid, exc)
                    continue
            holdings[cid] = self._sizes[cid]
        largest = sorted(holdings.items(), key=lambda item: (-item[1], item[0]))[:self._limit]
        return dict(largest)


class DataIndex:
    """The holdings of every live node, in Redis."""

    def __init__(self, redis_url: str) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

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
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def mark(self, task_id: str) -> None:
        self._redis.set(SUPERSEDED_PREFIX + task_id, "1", ex=7 * 24 * 3600)

    def is_superseded(self, task_id: str) -> bool:
        return bool(self._redis.exists(SUPERSEDED_PREFIX + task_id))


@dataclass(frozen=True)
class Placement:
    node_id: str
    local_bytes: int  # bytes of the job's inputs the node already holds
    input_bytes: int  # bytes of the job's inputs held anywhere we know of

    def describe(self) -> str:
        return (f"{self.node_id} holds {_mb(self.local_bytes)} of the job's "
                f"{_mb(self.input_bytes)} of IPFS input")


def place(spec: JobSpec, nodes: list[NodeInfo], holdings: dict[str, dict[str, int]]
          ) -> Placement | None:
    """The live node able to run the job that holds the most bytes of its inputs (ties: the least
    loaded), or None if no such node holds any of them."""
    roots = input_roots(spec)
    if not roots:
        return None
    queue = queue_for(spec)
    sizes: dict[str, int] = {}
    for held in holdings.values():
        for cid in roots:
            if cid in held:
                sizes[cid] = held[cid]
    best: tuple[int, float, str] | None = None
    for node in nodes:
        if queue not in node.queues or misfit(spec.resources, node.capacity):
            continue
        held = holdings.get(node.node_id, {})
        local = sum(sizes[cid] for cid in set(roots) if cid in held)
        if local <= 0:
            continue
        load = len(node.running) / max(1, node.concurrency)
        candidate = (local, -load, node.node_id)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        return None
    return Placement(best[2], best[0], sum(sizes[cid] for cid in set(roots)))


class LocalityProbe:
    """Measures, around a job's input fetch, whether its inputs were local and how many bytes the
    node's Kubo received from peers (bitswap; with several jobs fetching at once on one node the
    figure covers them all)."""

    def __init__(self, kubo: KuboClient) -> None:
        self._kubo = kubo

    def held(self, spec: JobSpec) -> bool | None:
        roots = input_roots(spec)
        if not roots:
            return None
        # one pin lookup per input root: listing every pin would grow with every result published
        return all(self._kubo.is_pinned(cid) for cid in roots)

    def received(self) -> int:
        return self._kubo.bitswap_received()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
