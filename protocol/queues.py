"""Which Celery queue a job goes to, and which queues a node consumes.

Jobs are sorted into classes by what they ask for; a node consumes the queue of every class it can
serve. Networked jobs have queues of their own (suffix `.net`), which only nodes whose operator
allows networked jobs consume: an operator refuses them simply by not listening.

| class | a job in it asks for | a node serves it with |
|---|---|---|
| `cod.cpu` | ≤ 2 CPUs, ≤ 4 GiB memory, no GPU | ≥ 2 CPUs, ≥ 4 GiB |
| `cod.highmem` | more CPUs or memory, no GPU | ≥ 16 GiB |
| `cod.gpu` | ≥ 1 GPU | ≥ 1 GPU |

Within a class a job may still be larger than a given node (a 64 GiB job, a 32 GiB node): the
bridge holds a job that no live node fits (`bridge.placement.unservable_reason`), and a node hands
back a job it does not fit to the queue for another node.
"""

from __future__ import annotations

from protocol.capacity import Capacity
from protocol.spec import JobSpec, Resources

CPU_QUEUE = "cod.cpu"
HIGHMEM_QUEUE = "cod.highmem"
GPU_QUEUE = "cod.gpu"
NETWORK_SUFFIX = ".net"
CLASS_QUEUES = (CPU_QUEUE, HIGHMEM_QUEUE, GPU_QUEUE)

GiB = 1024**3
STANDARD_CPUS = 2.0  # the largest job of the cpu class …
STANDARD_MEMORY = 4 * GiB  # … and every node serving that class can take it
HIGHMEM_NODE_MEMORY = 16 * GiB
NODE_QUEUE_PREFIX = "cod.node."


def node_queue(node_id: str) -> str:
    """The queue only `node_id` consumes: jobs sent to the data it holds."""
    return NODE_QUEUE_PREFIX + node_id


def class_queue(resources: Resources) -> str:
    if resources.gpu > 0:
        return GPU_QUEUE
    if resources.cpu > STANDARD_CPUS or resources.memory_bytes > STANDARD_MEMORY:
        return HIGHMEM_QUEUE
    return CPU_QUEUE


def queue_for(spec: JobSpec) -> str:
    """The queue a job is sent to."""
    queue = class_queue(spec.resources)
    return queue + NETWORK_SUFFIX if spec.network != "none" else queue


def queues_for_node(capacity: Capacity, allow_network: bool) -> list[str]:
    """The queues a node with this capacity consumes."""
    classes = []
    if capacity.cpus >= STANDARD_CPUS and capacity.memory >= STANDARD_MEMORY:
        classes.append(CPU_QUEUE)
    if capacity.memory >= HIGHMEM_NODE_MEMORY:
        classes.append(HIGHMEM_QUEUE)
    if capacity.gpus >= 1:
        classes.append(GPU_QUEUE)
    if allow_network:
        classes += [queue + NETWORK_SUFFIX for queue in classes]
    return classes


def misfit(resources: Resources, capacity: Capacity) -> str | None:
    """Why a job does not fit a node of this capacity, or None if it fits."""
    if resources.cpu > capacity.cpus:
        return f"{resources.cpu:g} CPUs (node has {capacity.cpus:g})"
    if resources.memory_bytes > capacity.memory:
        return f"{resources.memory} memory (node has {capacity.memory / GiB:.1f} GiB)"
    if resources.gpu > capacity.gpus:
        return f"{resources.gpu} GPUs (node has {capacity.gpus})"
    return None
