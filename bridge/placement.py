"""Where a job runs: code goes to the data.

Each node publishes the CIDs its Kubo has pinned (and their sizes) with every heartbeat
(`protocol.nodes.DataIndex`). The bridge scores every live node able to run a job by the bytes of
the job's IPFS inputs it already holds, and sends the job to the best node's own queue
(`cod.node.<node id>`); a job with no holder goes to the general queue for its resources
(`protocol.queues`). Pins are what a node holds *on purpose* (operators pin datasets with
`cod data pin`; results a node published are pinned too, so the next stage of a chain tends to run
where the previous one did). A job that no live node can serve waits, with the reason, until its
queue timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.nodes import NodeInfo
from protocol.queues import class_queue, misfit, queue_for
from protocol.spec import JobSpec, input_roots


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


def waiting_for(spec: JobSpec, nodes: list[NodeInfo], waited_s: float) -> Waiting | None:
    """Before the bridge dispatches a job: None if one of `nodes` (the live nodes, read once per
    dispatch batch) can serve it; else why it waits, and whether it has waited past its
    `queue_timeout`."""
    reason = unservable_reason(spec, nodes)
    if reason is None:
        return None
    if waited_s > spec.queue_timeout:
        return Waiting(f"no node could run the job within its queue timeout of "
                       f"{spec.queue_timeout} s: {reason}", expired=True)
    return Waiting(reason, expired=False)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
