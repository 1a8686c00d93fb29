"""`cod data pin|ls|unpin`: datasets a compute node holds on purpose, so jobs over them run there.

These act on the node's own Kubo (`COD_IPFS_API`), or with `--node ID` on that node's, as
`COD_NODE_IPFS_APIS` names it (`node-1=http://…,node-2=…`: `cod devstack --nodes N` exports it). The
node's worker advertises what is pinned with its next heartbeat (every few seconds); the bridge then
routes jobs over that data to this node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cod.cli.output import ENVIRONMENT, OutputFormat, console, fail, render

if TYPE_CHECKING:  # Kubo's client and the worker's settings load when a verb runs, not at start
    from protocol.ipfs import KuboClient

Output = Annotated[OutputFormat, typer.Option("--output", help="table, json or yaml.")]
CidArgument = Annotated[str, typer.Argument(help="The CID to hold (or release), e.g. bafy…")]
DatasetArgument = Annotated[str, typer.Argument(
    help="The CID to hold (bafy…, ipfs://bafy…), or a local file or directory: added first.")]
Node = Annotated[str | None, typer.Option(
    "--node", help="The compute node whose Kubo to use, as COD_NODE_IPFS_APIS names them "
                   "(cod devstack --nodes N); default: COD_IPFS_API.")]


def node_ipfs_apis(text: str) -> dict[str, str]:
    """`node-1=http://…,node-2=http://…` (COD_NODE_IPFS_APIS) → {node id: Kubo API URL}."""
    pairs = (item.partition("=") for item in text.split(",") if item.strip())
    return {node.strip(): api.strip() for node, _, api in pairs if node.strip() and api.strip()}


def _kubo(node: str | None = None) -> KuboClient:
    import os

    from executor.config import WorkerSettings
    from protocol.ipfs import KuboClient

    if node is None:
        return KuboClient(WorkerSettings().ipfs_api, timeout=3600)
    apis = node_ipfs_apis(os.environ.get("COD_NODE_IPFS_APIS", ""))
    if node not in apis:
        known = ", ".join(apis) or "none: set COD_NODE_IPFS_APIS (cod devstack exports it)"
        fail(f"no Kubo known for node {node!r} (known: {known})", ENVIRONMENT)
    return KuboClient(apis[node], timeout=3600)


def _where(kubo: KuboClient, node: str | None) -> str:
    return f"{node} ({kubo.api_url})" if node else kubo.api_url


def data_pin(dataset: DatasetArgument, node: Node = None) -> None:
    """Pin a CID on this node's Kubo (fetching it if needed), or add a local file or directory
    there: jobs over it will run on this node."""
    from pathlib import Path

    from protocol.ipfs import IpfsError, IpfsUnavailable

    kubo = _kubo(node)
    local = Path(dataset)
    try:
        if not dataset.startswith("ipfs://") and local.exists():
            cid = kubo.add_path(local.resolve())  # pinned as it is added
            console.print(f"added {dataset} as {cid}")
        else:
            cid = dataset.removeprefix("ipfs://")
            kubo.pin(cid)
        size = kubo.stat(cid).cumulative_size
    except IpfsUnavailable as exc:
        fail(f"{exc}: start the node's Kubo or set COD_IPFS_API", ENVIRONMENT)
    except IpfsError as exc:
        fail(str(exc), ENVIRONMENT)
    console.print(f"pinned {cid} ({size / 1e6:.1f} MB) on {_where(kubo, node)}")


def data_unpin(cid: CidArgument, node: Node = None) -> None:
    """Release CID: this node stops advertising it (Kubo's GC may then remove it)."""
    from protocol.ipfs import IpfsError, IpfsUnavailable

    try:
        _kubo(node).unpin(cid.removeprefix("ipfs://"))
    except IpfsUnavailable as exc:
        fail(f"{exc}: start the node's Kubo or set COD_IPFS_API", ENVIRONMENT)
    except IpfsError as exc:
        fail(str(exc), ENVIRONMENT)
    console.print(f"unpinned {cid}")


def data_ls(output: Output = OutputFormat.table, node: Node = None) -> None:
    """What this node holds on purpose (its pinned CIDs) and their sizes."""
    from rich.table import Table

    from executor.config import WorkerSettings
    from executor.locality import HoldingsScanner
    from protocol.ipfs import IpfsUnavailable

    try:
        holdings = HoldingsScanner(_kubo(node)).scan()
    except IpfsUnavailable as exc:
        fail(f"{exc}: start the node's Kubo or set COD_IPFS_API", ENVIRONMENT)
    rows: list[dict[str, str | int]] = [{"cid": cid, "bytes": size}
                                         for cid, size in sorted(holdings.items())]

    def table() -> None:
        grid = Table(box=None, pad_edge=False)
        grid.add_column("CID", no_wrap=True)
        grid.add_column("SIZE", justify="right")
        for cid, size in sorted(holdings.items()):
            grid.add_row(cid, f"{size / 1e6:.1f} MB")
        console.print(grid)
        console.print(f"{len(rows)} CIDs, {sum(holdings.values()) / 1e6:.1f} MB")

    render({"node": node or WorkerSettings().node_id, "data": rows}, output, table)
