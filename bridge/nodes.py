"""Compute nodes, as the executors' Celery workers report themselves (`cod node list`, `GET /nodes`).

One function, `list_nodes`, so that node heartbeats (issue 4) can replace Celery's `inspect` here
without touching its callers.
"""

from __future__ import annotations

from typing import Any

from kombu.connection import Connection

from bridge.views import NodeView
from executor.celery_app import make_app


class BrokerUnavailable(RuntimeError):
    """The broker (Redis) cannot be reached."""


def check_broker(broker_url: str) -> None:
    """Raise BrokerUnavailable unless the broker answers within a couple of seconds."""
    try:
        with Connection(broker_url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # kombu raises the transport's own errors
        raise BrokerUnavailable(f"no broker at {broker_url}: start Redis or set COD_BROKER_URL"
                                ) from exc


def list_nodes(broker_url: str, timeout_s: float = 1.0) -> list[NodeView]:
    """Workers that answer a broadcast within `timeout_s`, with the jobs they are running."""
    check_broker(broker_url)
    app = make_app(broker_url)
    try:
        stats: dict[str, Any] = app.control.inspect(timeout=timeout_s).stats() or {}
        # the nodes are known now: the next broadcasts end as soon as each one has answered
        inspect = app.control.inspect(timeout=timeout_s, limit=len(stats))
        active: dict[str, Any] = (inspect.active() or {}) if stats else {}
        queues: dict[str, Any] = (inspect.active_queues() or {}) if stats else {}
    finally:
        app.close()
    nodes = []
    for hostname in sorted(stats):
        info = stats[hostname]
        pool = info.get("pool") or {}
        total = info.get("total") or {}
        nodes.append(NodeView(
            id=hostname.split("@", 1)[0], hostname=hostname,
            queues=sorted(q["name"] for q in queues.get(hostname, [])),
            concurrency=pool.get("max-concurrency"),
            running=[str((task.get("args") or ["?"])[0]) for task in active.get(hostname, [])],
            completed_tasks=sum(int(v) for v in total.values()) if total else 0,
        ))
    return nodes
