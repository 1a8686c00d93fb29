"""What `cod job list|describe` print and `GET /jobs…` return: one set of models for both.

JSON keys are camelCase, like the contract's names (`resultCid`, `exitCode`). Wei amounts are
strings: they overflow a JavaScript number.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from cod.status import STATUSES as STATUSES  # re-exported: both were defined here
from cod.status import Status as Status


class View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_data(self) -> dict[str, Any]:
        """JSON-ready dict with the public (camelCase) keys."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data


class TimelineEntry(View):
    at: str  # ISO 8601, UTC
    source: Literal["chain", "bridge"]
    event: str
    detail: str = ""


class JobSummary(View):
    id: int
    status: Status
    requester: str
    consumer: str
    fee_wei: str
    requested_at: str | None = None
    deadline: str
    engine: str | None = None
    image: str | None = None
    result_cid: str | None = None
    exit_code: int | None = None
    reason: str | None = None  # why a job failed or will be failed (e.g. an undecodable request)
    bridge_state: str | None = None  # the bridge's ledger state, when a ledger is configured
    node: str | None = None  # the compute node that ran it, when known


class Links(View):
    result: str  # ipfs://CID
    gateway: str  # the result directory on an IPFS gateway
    stdout: str
    stderr: str
    outputs: dict[str, str]  # output name → gateway URL


class OperatorActivity(View):
    """One operator's part in a job, from the chain's events (`JobClaimed`, `LeaseLapsed`,
    `ResultCommitted`, `ResultRevealed`, `Slashed`)."""

    operator: str
    lease_end: str | None = None  # its claim's lease end (ISO 8601)
    lapsed: bool = False  # its lease lapsed (it may not claim the job again)
    penalty_wei: str | None = None  # what the lapse cost it (paid to the requester)
    commitment: str | None = None  # replicas > 1: its commitment (0x…)
    answer: str | None = None  # replicas > 1: the result digest it revealed (0x…)
    agrees: bool | None = None  # its answer is the completed job's result digest (None: unknown)
    slashed_wei: str = "0"  # stake it lost over this job
    slash_reasons: list[str] = []  # lapse, disagreement, no reveal


class Finalization(View):
    """A replicated job's payouts (`JobFinalized`)."""

    agreeing: int  # operators that revealed the winning answer and split the fee
    slashed_wei: str  # stake taken from the others


class JobDetail(JobSummary):
    result_hex: str | None = None  # the small on-chain result (JobCompleted's `result`), 0x…
    result_text: str | None = None  # the same, when it is printable UTF-8 text
    result_verified: bool | None = None  # the result hashes to the chain's resultDigest
    chain_status: str | None = None  # the chain's own status (requested, claimed, revealing, …)
    claimer: str | None = None  # the operator holding the job's lease (replicas = 1)
    lease_end: str | None = None  # until when (ISO 8601)
    replicas: int | None = None  # the request's terms: operators that each run it
    lease_seconds: int | None = None  # the lease of a claim, resolved by the JobManager
    restricted: bool | None = None  # only `allowedClaimers` may claim it
    allowed_claimers: list[str] = []  # a restricted request's claimers (`ClaimersSet`)
    operators: list[OperatorActivity] = []  # who claimed, lapsed, committed, revealed, was slashed
    reveal_end: str | None = None  # replicas > 1: when the reveal phase closes (ISO 8601)
    finalized: Finalization | None = None  # replicas > 1: payouts settled
    request_block: int | None = None
    request_tx: str | None = None
    spec: dict[str, Any] | None = None  # the spec as parsed JSON (None if it is not JSON)
    spec_text: str | None = None
    spec_error: str | None = None  # why the spec is invalid, if it is
    timeline: list[TimelineEntry] = []
    links: Links | None = None


class JobPage(View):
    jobs: list[JobSummary]
    total: int | None  # matching jobs, before paging (None: not known without a full scan)
    offset: int
    limit: int
    next_offset: int | None = None
    next_cursor: str | None = None  # pass back as `cursor` for the next page (None: last page)


class NodeView(View):
    id: str
    hostname: str
    queues: list[str]
    concurrency: int | None = None
    running: list[str]  # task ids being executed
    completed_tasks: int | None = None
    cpus: float | None = None
    memory_bytes: int | None = None
    gpus: int | None = None
    load_avg: float | None = None  # the host's 1-minute load average
    seen_at: float | None = None  # the last heartbeat (Unix time)
    data_cids: int = 0  # CIDs pinned on the node's Kubo (locality routing)
    data_bytes: int = 0


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
