"""What `cod job list|describe` print and `GET /jobs…` return: one set of models for both.

JSON keys are camelCase, like the contract's names (`resultCid`, `exitCode`). Wei amounts are
strings: they overflow a JavaScript number.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Status(StrEnum):
    """A job's status as users see it: the chain's (a job the bridge closed shows as cancelled,
    unless the chain says it was completed). `cod job list --status`, `GET /jobs?status=`."""

    REQUESTED = "requested"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUSES: tuple[str, ...] = tuple(Status)


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


class JobDetail(JobSummary):
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
