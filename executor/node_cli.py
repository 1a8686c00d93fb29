"""`cod node …`: the live compute nodes, from their heartbeats in Redis."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from executor.config import WorkerSettings
from executor.nodes import list_nodes

app = typer.Typer(help="Inspect compute nodes.", no_args_is_help=True)


@app.command("list")
def node_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show each live node: its queues, capacity and current load."""
    nodes = list_nodes(WorkerSettings().broker_url)
    if as_json:
        print(json.dumps([json.loads(n.to_json()) for n in nodes], indent=2))
        return
    table = Table("node", "queues", "cpus", "memory", "gpus", "running", "load", "seen")
    for node in nodes:
        cap = node.capacity
        table.add_row(
            node.node_id, ",".join(node.queues), f"{cap.cpus:g}", f"{cap.memory / 1024**3:.1f} GiB",
            str(cap.gpus), f"{len(node.running)}/{node.concurrency}", f"{node.load_avg:.2f}",
            f"{time.time() - node.seen_at:.0f} s ago",
        )
    Console().print(table)
    if not nodes:
        print("no live node (workers write a heartbeat every few seconds)")
