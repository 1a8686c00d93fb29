"""`cod data pin|ls|unpin`: datasets a compute node holds on purpose, so jobs over them run there.

These act on the node's own Kubo (`COD_IPFS_API`). The node's worker advertises what is pinned with
its next heartbeat (every few seconds); the bridge then routes jobs over that data to this node.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cod.cli.output import ENVIRONMENT, OutputFormat, console, fail, render
from executor.config import WorkerSettings
from executor.locality import HoldingsScanner
from protocol.ipfs import IpfsError, IpfsUnavailable, KuboClient

Output = Annotated[OutputFormat, typer.Option("--output", help="table, json or yaml.")]
CidArgument = Annotated[str, typer.Argument(help="The CID to hold (or release), e.g. bafy…")]


def _kubo() -> KuboClient:
    return KuboClient(WorkerSettings().ipfs_api, timeout=3600)


def data_pin(cid: CidArgument) -> None:
    """Pin CID on this node's Kubo (fetching it if needed): jobs over it will run here."""
    kubo = _kubo()
    try:
        kubo.pin(cid.removeprefix("ipfs://"))
        size = kubo.stat(cid.removeprefix("ipfs://")).cumulative_size
    except IpfsUnavailable as exc:
        fail(f"{exc}: start the node's Kubo or set COD_IPFS_API", ENVIRONMENT)
    except IpfsError as exc:
        fail(str(exc), ENVIRONMENT)
    console.print(f"pinned {cid} ({size / 1e6:.1f} MB) on {kubo.api_url}")


def data_unpin(cid: CidArgument) -> None:
    """Release CID: this node stops advertising it (Kubo's GC may then remove it)."""
    try:
        _kubo().unpin(cid.removeprefix("ipfs://"))
    except IpfsUnavailable as exc:
        fail(f"{exc}: start the node's Kubo or set COD_IPFS_API", ENVIRONMENT)
    except IpfsError as exc:
        fail(str(exc), ENVIRONMENT)
    console.print(f"unpinned {cid}")


def data_ls(output: Output = OutputFormat.table) -> None:
    """What this node holds on purpose (its pinned CIDs) and their sizes."""
    try:
        holdings = HoldingsScanner(_kubo()).scan()
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

    render({"node": WorkerSettings().node_id, "data": rows}, output, table)
