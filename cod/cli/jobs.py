"""`cod job list|describe|logs|get|cancel` and `cod node list`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cod.cli.common import (
    download_result,
    load_settings,
    print_logs,
    wait_for,
)
from cod.cli.output import (
    JOB_FAILED,
    STILL_RUNNING,
    USAGE,
    OutputFormat,
    console,
    err,
    fail,
    render,
)
from cod.options import format_wei
from cod.status import STATUSES

if TYPE_CHECKING:  # the chain, the read side and rich load when a verb runs, not at start
    from rich.table import Table

    from cod.views import JobDetail

Output = Annotated[OutputFormat, typer.Option("--output", help="table, json or yaml.")]


def _grid() -> Table:
    from rich.table import Table

    return Table(box=None, pad_edge=False)


def _short(text: str | None, wide: bool, keep: int = 14) -> str:
    if not text:
        return ""
    return text if wide or len(text) <= keep + 1 else text[:keep] + "…"


def job_list(
    status: Annotated[str | None, typer.Option(help=f"Only jobs in this state: "
                                               f"{', '.join(STATUSES)}.")] = None,
    requester: Annotated[str | None, typer.Option(help="Only jobs requested by this address "
                                                  "('me': the configured key).")] = None,
    since: Annotated[str | None, typer.Option(help="Only jobs requested since: 30m, 2h, 1d or "
                                              "an ISO time.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Jobs per page.")] = 10,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first).")] = 0,
    reverse: Annotated[bool, typer.Option("--reverse", help="Oldest first.")] = False,
    cursor: Annotated[str | None, typer.Option(help="Go on from a page's next cursor (printed "
                                               "below the table).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Do not shorten addresses and CIDs.")
                    ] = False,
    output: Output = OutputFormat.table,
) -> None:
    """List jobs, newest first, from the chain (and the bridge's ledger, if configured)."""
    from cod.queries import JobReader, parse_since

    settings = load_settings()
    if requester == "me":
        from eth_account import Account

        requester = Account.from_key(load_settings(key=True).require_key()).address
    since_ts = parse_since(since) if since else None
    page = JobReader(settings).list(status, requester, since_ts, limit, offset, reverse, cursor)

    def table() -> None:
        grid = _grid()
        for column in ("ID", "REQUESTED", "STATUS", "EXIT", "IMAGE", "NODE", "RESULT"):
            grid.add_column(column, no_wrap=True)
        for job in page.jobs:
            grid.add_row(str(job.id), (job.requested_at or "").replace("T", " ").rstrip("Z"),
                         job.status, "" if job.exit_code is None else str(job.exit_code),
                         _short(job.image, wide, 24), job.node or "",
                         _short(job.result_cid, wide))
        console.print(grid)
        more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor is not None else ""
        if page.next_offset is not None and page.total is not None:
            more = f"; next page: --offset {page.next_offset}"
        total = f" of {page.total}" if page.total is not None else ""
        err.print(f"{len(page.jobs)}{total} job(s){more}")

    render(page, output, table)


def job_describe(job_id: int, output: Output = OutputFormat.table) -> None:
    """A job: on-chain state, spec, and the timeline merged from the chain and the bridge."""
    from cod.queries import JobReader

    detail = JobReader(load_settings()).describe(job_id)
    render(detail, output, lambda: _describe_table(detail))


def _describe_table(job: JobDetail) -> None:
    rows = [("ID", str(job.id)), ("Status", job.status), ("Requester", job.requester),
            ("Consumer", job.consumer), ("Fee", format_wei(int(job.fee_wei))),
            ("Requested", job.requested_at or ""), ("Deadline", job.deadline),
            ("Engine", job.engine or ""), ("Image", job.image or ""),
            ("Node", job.node or ""), ("Bridge state", job.bridge_state or ""),
            ("Chain status", job.chain_status if job.chain_status not in (None, job.status)
             else ""),
            ("Claimed by", f"{job.claimer} (lease until {job.lease_end or '?'})"
             if job.claimer else ""),
            ("Result CID", job.result_cid or ""),
            ("Exit code", "" if job.exit_code is None else str(job.exit_code)),
            ("Result", job.result_hex if job.result_hex not in (None, "0x") else ""),
            ("Result text", repr(job.result_text)[1:-1] if job.result_text else ""),
            ("Verified", {True: "yes: the result matches the chain's resultDigest",
                          False: "NO: the result does not match the chain's resultDigest"}
             .get(job.result_verified, "") if job.result_verified is not None else ""),
            ("Reason", job.reason or "")]
    for name, value in rows:
        if value:
            console.print(f"{name + ':':<14}{value}", soft_wrap=True, markup=False)  # theirs
    if job.spec_error:
        console.print(f"{'Spec error:':<14}{job.spec_error}", soft_wrap=True)
    network = network_lines(job)
    if network:
        console.print("\nNetwork:")
        for line in network:
            console.print(f"  {line}", soft_wrap=True, markup=False)
    console.print("\nSpec:")
    console.print(json.dumps(job.spec, indent=2) if job.spec is not None else job.spec_text,
                  soft_wrap=True)
    console.print("\nTimeline:")
    grid = _grid()
    for column in ("TIME", "SOURCE", "EVENT", "DETAIL"):
        grid.add_column(column, no_wrap=column != "DETAIL")
    for entry in job.timeline:
        detail = re.sub(r"\b(0x[0-9a-f]{8})[0-9a-f]{48}([0-9a-f]{8})\b", r"\1…\2", entry.detail)
        grid.add_row(entry.at.replace("T", " ").rstrip("Z"), entry.source, entry.event, detail)
    console.print(grid)


def network_lines(job: JobDetail) -> list[str]:
    """What the operators did with the job: the request's options, then each operator's claim,
    lapse, commitment, reveal and slashing, then the reveal phase and the finalization."""
    lines = []
    if job.replicas is not None:
        who = (f"only {', '.join(job.allowed_claimers) or 'named claimers'}" if job.restricted
               else "any staked operator")
        lease = f"lease {job.lease_seconds} s" if job.lease_seconds else "default lease"
        lines.append(f"replicas {job.replicas}, {lease}, claimers: {who}")
    for seen in job.operators:
        parts = [f"claimed by {seen.operator}"
                 + (f" (lease until {seen.lease_end})" if seen.lease_end else "")]
        if seen.lapsed:
            parts.append(f"lease lapsed, penalty {format_wei(int(seen.penalty_wei or 0))}")
        if seen.commitment:
            parts.append(f"committed {_short(seen.commitment, False, 12)}")
        if seen.answer:
            agreement = ("" if seen.agrees is None else " (agrees with the result)"
                         if seen.agrees else " (differs from the result)")
            parts.append(f"revealed {seen.answer}{agreement}")
        if int(seen.slashed_wei):
            parts.append(f"slashed {format_wei(int(seen.slashed_wei))} "
                         f"({', '.join(seen.slash_reasons)})")
        lines.append("; ".join(parts))
    if job.reveal_end:
        lines.append(f"reveal phase until {job.reveal_end}")
    if job.finalized is not None:
        lines.append(f"finalized: {job.finalized.agreeing} agreeing, "
                     f"{format_wei(int(job.finalized.slashed_wei))} slashed")
    return lines


def job_logs(
    job_id: int,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait until the job ends, then "
                                         "print its logs.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --follow.")] = 3600,
) -> None:
    """The job's stdout (to stdout) and stderr (to stderr), read from its result on IPFS.

    Live logs of a running container are not available yet: while the job runs this says so,
    and with -f waits for the result."""
    from bridge.chain import JobStatus
    from cod.queries import JobReader

    settings = load_settings()
    reader = JobReader(settings)
    progress = reader.progress(job_id)
    if not progress.done:
        if not follow:
            fail(f"job {job_id} is still {progress.stage}; its logs are published with its "
                 f"result (live logs are not available yet): cod job logs {job_id} -f waits",
                 STILL_RUNNING)
        progress = wait_for(reader, job_id, timeout, show=True)
    job = progress.job
    if job.status != JobStatus.COMPLETED or progress.result_cid is None:
        reason = f": {progress.detail}" if progress.detail else ""
        if job.status == JobStatus.COMPLETED:
            fail(f"job {job_id} completed, but its JobCompleted event was not found within the "
                 "scan budget (COD_LEDGER_URL or a later start block helps)", JOB_FAILED)
        fail(f"job {job_id} {job.status.name.lower()} without running{reason}", JOB_FAILED)
    print_logs(settings, progress.result_cid)


def job_get(
    job_id: int,
    output_dir: Annotated[Path | None, typer.Option(help="Where to write (default ./job-ID).")
                          ] = None,
) -> None:
    """Download the job's result: stdout, stderr, exitCode and one folder per output."""
    from bridge.chain import JobStatus
    from cod.queries import JobReader

    settings = load_settings()
    reader = JobReader(settings, use_ledger=False)
    job = reader.read(job_id)
    if job.status != JobStatus.COMPLETED:
        code = STILL_RUNNING if job.status.open else JOB_FAILED
        fail(f"job {job_id} is {job.status.name.lower()}: it has no result", code)
    result = reader.result(job_id, job)
    if result is None:
        fail(f"job {job_id} completed, but its JobCompleted event was not found within the scan "
             "budget (a later COD_START_BLOCK helps)", JOB_FAILED)
    target = output_dir or Path(f"job-{job_id}")
    download_result(settings, result.result_cid, target)
    console.print(f"Result of job {job_id} ({result.result_cid}) written to {target}",
                  soft_wrap=True)


def job_cancel(
    job_id: int,
    withdraw: Annotated[bool, typer.Option("--withdraw/--no-withdraw", help="Withdraw the refund "
                                           "to the key right away.")] = True,
) -> None:
    """Cancel a job after its deadline (the contract's rule) and take the fee back."""
    from cod.jobs import JobClient

    settings = load_settings(key=True)
    cancelled = JobClient(settings).cancel(job_id, withdraw)
    console.print(f"Job {job_id} cancelled (tx {cancelled.tx_hash})", soft_wrap=True)
    if withdraw:
        console.print(f"Refunded {format_wei(cancelled.refunded_wei)} to the requester")
    else:
        console.print("The fee is credited to the requester: withdraw() it from the JobManager")


def node_list(output: Output = OutputFormat.table) -> None:
    """Live compute nodes: queues, capacity, load, and the data each holds."""
    from cod.nodes import list_nodes

    settings = load_settings(contract=False)
    nodes = list_nodes(settings.broker_url)

    def table() -> None:
        grid = _grid()
        for column in ("ID", "QUEUES", "CPUS", "MEMORY", "GPUS", "RUNNING", "LOAD", "DATA",
                       "SEEN"):
            grid.add_column(column, no_wrap=True)
        for node in nodes:
            grid.add_row(
                node.id, ",".join(node.queues), f"{node.cpus or 0:g}",
                f"{(node.memory_bytes or 0) / 1024**3:.1f} GiB", str(node.gpus or 0),
                f"{len(node.running)}/{node.concurrency or 1}", f"{node.load_avg or 0:.2f}",
                f"{node.data_cids} CIDs, {node.data_bytes / 1e6:.1f} MB",
                f"{time.time() - (node.seen_at or time.time()):.0f} s ago")
        console.print(grid)
        if not nodes:
            err.print("no live node (start one with: cod worker)")

    render(nodes, output, table)


__all__ = ["USAGE", "job_cancel", "job_describe", "job_get", "job_list", "job_logs", "node_list"]
