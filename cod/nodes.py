"""Compute nodes, as the executor workers report themselves (`cod node list`, `GET /nodes`).

Each worker writes a heartbeat (queues, capacity, running jobs) and the list of CIDs it holds into
Redis every few seconds; a node that stops beating drops out by itself.
"""

from __future__ import annotations

from kombu.connection import Connection

from bridge.redact import redact
from cod.views import NodeView


class BrokerUnavailable(RuntimeError):
    """The broker (Redis) cannot be reached."""


def check_broker(broker_url: str) -> None:
    """Raise BrokerUnavailable unless the broker answers within a couple of seconds."""
    try:
        with Connection(broker_url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # kombu raises the transport's own errors
        raise BrokerUnavailable(f"no broker at {redact(broker_url)}: start Redis or set "
                                "COD_BROKER_URL") from exc


def list_nodes(broker_url: str, timeout_s: float = 1.0) -> list[NodeView]:
    """The live compute nodes, from their heartbeats in Redis (`protocol.nodes`), with the data
    each holds (`executor.locality`)."""
    del timeout_s  # heartbeats are read, not broadcast: nothing to wait for
    check_broker(broker_url)
    from protocol.nodes import DataIndex
    from protocol.nodes import list_nodes as live_nodes

    nodes = live_nodes(broker_url)
    holdings = DataIndex(broker_url).holdings([n.node_id for n in nodes])
    return [
        NodeView(
            id=node.node_id, hostname=node.node_id, queues=sorted(node.queues),
            concurrency=node.concurrency, running=list(node.running), completed_tasks=None,
            cpus=node.capacity.cpus, memory_bytes=node.capacity.memory, gpus=node.capacity.gpus,
            load_avg=node.load_avg, seen_at=node.seen_at,
            data_cids=len(holdings.get(node.node_id, {})),
            data_bytes=sum(holdings.get(node.node_id, {}).values()),
        )
        for node in nodes
    ]
