"""The read side of jobs: on-chain state and events, merged with the bridge's ledger when one is
configured (`COD_LEDGER_URL`). Works from chain data alone when none is.

The ledger is used read-only, through its own methods (`get`, `timeline`, `all_jobs`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

from bridge.chain import JobStatus, OnChainJob, connect, job_manager
from bridge.config import BridgeSettings
from bridge.jobs import read_existing_job
from bridge.ledger import Job as LedgerJob
from bridge.ledger import Ledger
from bridge.views import STATUSES, JobDetail, JobPage, JobSummary, TimelineEntry, iso
from executor.spec import SpecError, parse_spec

_DURATION_RE = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TERMINAL = {"JobCompleted": "completed", "JobFailed": "failed", "JobCancelled": "cancelled"}


def open_ledger(settings: BridgeSettings) -> Ledger | None:
    """The bridge's ledger if `COD_LEDGER_URL` is set (and, for SQLite, the file exists)."""
    if "ledger_url" not in settings.model_fields_set:
        return None
    url = settings.ledger_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    return Ledger(url)


def parse_since(text: str, now: float | None = None) -> float:
    """`10m`, `2h`, `3d` ago, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    now = time.time() if now is None else now
    match = _DURATION_RE.match(text.strip())
    if match:
        return now - int(match.group(1)) * _SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use e.g. 30m, 2h, 1d or 2025-01-31T12:00:00Z)"
                         ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Progress:
    """Where a job is now, for `--wait`: requested → queued → running → published → fulfilled."""

    stage: str  # requested, queued, running, published, rejected, fulfilled, failed, cancelled
    detail: str
    job: OnChainJob
    task_id: str | None = None  # from the ledger, when one is configured
    node: str | None = None

    @property
    def rank(self) -> int:
        """Stages only move forward: a later poll never shows an earlier stage."""
        return {"requested": 0, "queued": 1, "running": 2, "published": 3, "rejected": 3
                }.get(self.stage, 4)

    @property
    def done(self) -> bool:
        return self.job.status != JobStatus.REQUESTED


class JobReader:
    def __init__(self, settings: BridgeSettings, w3: Web3 | None = None,
                 ledger: Ledger | None = None, use_ledger: bool = True) -> None:
        self.settings = settings
        self.w3 = w3 or connect(settings.rpc_url)
        self.manager: Contract = job_manager(self.w3, settings.require_contract())
        self.address = str(self.manager.address)
        self.ledger = ledger if ledger is not None or not use_ledger else open_ledger(settings)
        self._chain_id: int | None = None
        self._block_times: dict[int, int] = {}

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # -- list ------------------------------------------------------------------------------------
    def list(self, status: str | None = None, requester: str | None = None,
             since: float | None = None, limit: int = 10, offset: int = 0,
             oldest_first: bool = False) -> JobPage:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        filters: dict[str, Any] = {}
        if requester:
            if not Web3.is_address(requester):
                raise ValueError(f"not an address: {requester!r}")
            filters["requester"] = Web3.to_checksum_address(requester)
        start = self.settings.start_block
        if since is not None:
            start = self._first_block_at(since, start)
        requested = list(self._logs("JobRequested", start, filters))
        ends: dict[int, tuple[str, Any]] = {}
        for name, kind in _TERMINAL.items():
            for entry in self._logs(name, start, {}):
                ends[int(entry["args"]["jobId"])] = (kind, entry["args"])
        ledger_jobs = self._ledger_jobs()
        rows = []
        for entry in requested:
            job_id = int(entry["args"]["jobId"])
            kind, args = ends.get(job_id, ("requested", {}))
            if status is None or kind == status:
                rows.append((entry, kind, args))
        if not oldest_first:
            rows.reverse()
        page = rows[offset: offset + limit]
        jobs = [self._summary(entry, kind, args, ledger_jobs.get(int(entry["args"]["jobId"])))
                for entry, kind, args in page]
        next_offset = offset + limit if offset + limit < len(rows) else None
        return JobPage(jobs=jobs, total=len(rows), offset=offset, limit=limit,
                       next_offset=next_offset)

    def _summary(self, entry: Any, kind: str, end: Any, ledger_job: LedgerJob | None
                 ) -> JobSummary:
        args = entry["args"]
        spec = _spec_fields(str(args["spec"]))
        return JobSummary(
            id=int(args["jobId"]), status=kind, requester=str(args["requester"]),  # type: ignore[arg-type]
            consumer=str(args["consumer"]), fee_wei=str(int(args["fee"])),
            requested_at=iso(self._block_time(int(entry["blockNumber"]))),
            deadline=iso(int(args["deadline"])) or "", engine=spec.get("engine", "docker"),
            image=spec.get("image"), result_cid=end.get("resultCid") or None,
            exit_code=int(end["exitCode"]) if "exitCode" in end else None,
            reason=end.get("reason") or None,
            bridge_state=ledger_job.state if ledger_job else None,
            node=ledger_job.node if ledger_job else None,
        )

    def counts(self) -> dict[str, int]:
        """How many jobs are in each on-chain status (for `/metrics`)."""
        start = self.settings.start_block
        counts = {status: 0 for status in STATUSES}
        total = sum(1 for _ in self._logs("JobRequested", start, {}))
        for name, kind in _TERMINAL.items():
            counts[kind] = sum(1 for _ in self._logs(name, start, {}))
        counts["requested"] = total - sum(counts.values())
        return counts

    # -- describe --------------------------------------------------------------------------------
    def describe(self, job_id: int) -> JobDetail:
        on_chain = self.read(job_id)
        filters = {"jobId": job_id}
        start = self.settings.start_block
        requested = next(iter(self._logs("JobRequested", start, filters)), None)
        chain_start: list[TimelineEntry] = []
        chain_end: list[TimelineEntry] = []
        end_args: Any = {}
        if requested is not None:
            start = int(requested["blockNumber"])
            chain_start.append(self._chain_entry(requested, "requested",
                                                 f"fee {int(requested['args']['fee'])} wei"))
        for name in (*_TERMINAL, "CallbackFailed"):
            for entry in self._logs(name, start, filters):
                kind = _TERMINAL.get(name, "callback-failed")
                args = entry["args"]
                if name in _TERMINAL:
                    end_args = args
                detail = {"completed": f"{args.get('resultCid')} exit {args.get('exitCode')}",
                          "failed": str(args.get("reason", "")),
                          "callback-failed": "the consumer's callback reverted"}.get(kind, "")
                chain_end.append(self._chain_entry(entry, kind, detail))
        bridge: list[TimelineEntry] = []
        ledger_job = None
        if self.ledger is not None:
            ledger_job = self.ledger.get(self.chain_id, self.address, job_id)
            bridge = [TimelineEntry(at=iso(event.at) or "", source="bridge", event=event.kind,
                                    detail=event.detail)
                      for event in self.ledger.timeline(self.chain_id, self.address, job_id)]
        timeline = _merge(chain_start, bridge, chain_end)
        spec_text = str(requested["args"]["spec"]) if requested is not None else None
        spec_data, spec_error = _spec_detail(spec_text)
        status = on_chain.status.name.lower()
        return JobDetail(
            id=job_id, status=status,  # type: ignore[arg-type]
            requester=on_chain.requester, consumer=on_chain.consumer,
            fee_wei=str(on_chain.fee), deadline=iso(on_chain.deadline) or "",
            requested_at=(iso(self._block_time(int(requested["blockNumber"])))
                          if requested is not None else None),
            engine=(spec_data or {}).get("engine", "docker"), image=(spec_data or {}).get("image"),
            result_cid=on_chain.result_cid or None,
            exit_code=on_chain.exit_code if on_chain.status == JobStatus.COMPLETED else None,
            reason=end_args.get("reason") or None if status == "failed" else None,
            bridge_state=ledger_job.state if ledger_job else None,
            node=ledger_job.node if ledger_job else None,
            request_block=int(requested["blockNumber"]) if requested is not None else None,
            request_tx=Web3.to_hex(requested["transactionHash"]) if requested is not None else None,
            spec=spec_data, spec_text=spec_text, spec_error=spec_error, timeline=timeline,
        )

    def read(self, job_id: int) -> OnChainJob:
        return read_existing_job(self.manager, job_id)

    # -- progress --------------------------------------------------------------------------------
    def progress(self, job_id: int, task_state: Any = None) -> Progress:
        """The job's stage now. `task_state(task_id) -> (state, node)` reads Celery, if given."""
        job = self.read(job_id)
        if job.status != JobStatus.REQUESTED:
            stage = {JobStatus.COMPLETED: "fulfilled", JobStatus.FAILED: "failed",
                     JobStatus.CANCELLED: "cancelled"}[job.status]
            detail = job.result_cid
            if job.status == JobStatus.FAILED:
                failed = list(self._logs("JobFailed", self.settings.start_block, {"jobId": job_id}))
                detail = str(failed[-1]["args"]["reason"]) if failed else ""
            ledger_job = (self.ledger.get(self.chain_id, self.address, job_id)
                          if self.ledger is not None else None)
            return Progress(stage, detail, job, ledger_job.task_id if ledger_job else None,
                            ledger_job.node if ledger_job else None)
        ledger_job = (self.ledger.get(self.chain_id, self.address, job_id)
                      if self.ledger is not None else None)
        if ledger_job is None or ledger_job.state == "requested":
            return Progress("requested", "", job)
        task_id, node = ledger_job.task_id, ledger_job.node
        if ledger_job.state == "dispatched":
            if task_state is not None and task_id:
                state, node = task_state(task_id)
                if state in ("STARTED", "RETRY", "SUCCESS", "FAILURE"):  # ran, not yet collected
                    return Progress("running", f"on {node}", job, task_id, node)
            return Progress("queued", task_id or "", job, task_id)
        if ledger_job.state == "rejected":
            return Progress("rejected", ledger_job.reason or "", job, task_id, node)
        return Progress("published", f"on {node}: {ledger_job.result_cid} "
                        f"exit {ledger_job.exit_code}", job, task_id, node)

    # -- helpers ---------------------------------------------------------------------------------
    def _ledger_jobs(self) -> dict[int, LedgerJob]:
        if self.ledger is None:
            return {}
        return {j.job_id: j for j in self.ledger.all_jobs(self.chain_id, self.address)}

    def _chain_entry(self, entry: Any, kind: str, detail: str) -> TimelineEntry:
        tx = Web3.to_hex(entry["transactionHash"])
        return TimelineEntry(at=iso(self._block_time(int(entry["blockNumber"]))) or "",
                             source="chain", event=kind,
                             detail=f"{detail} (block {int(entry['blockNumber'])}, tx {tx})".strip())

    def _logs(self, event: str, start: int, filters: dict[str, Any]) -> Iterator[Any]:
        head = int(self.w3.eth.block_number)
        chunk = max(self.settings.log_chunk_blocks, 1)
        for low in range(start, head + 1, chunk):
            yield from getattr(self.manager.events, event).get_logs(
                from_block=low, to_block=min(low + chunk - 1, head), argument_filters=filters)

    def _block_time(self, number: int) -> int:
        if number not in self._block_times:
            self._block_times[number] = int(self.w3.eth.get_block(number)["timestamp"])
        return self._block_times[number]

    def _first_block_at(self, timestamp: float, low: int) -> int:
        """The first block at or after `timestamp` (binary search; blocks are time-ordered)."""
        high = int(self.w3.eth.block_number)
        if self._block_time(high) < timestamp:
            return high + 1
        while low < high:
            middle = (low + high) // 2
            if self._block_time(middle) < timestamp:
                low = middle + 1
            else:
                high = middle
        return low


def _merge(chain_start: list[TimelineEntry], bridge: list[TimelineEntry],
           chain_end: list[TimelineEntry]) -> list[TimelineEntry]:
    """One timeline in causal order. Chain times are block timestamps and bridge times the
    bridge's clock, which need not agree: the request comes first, the bridge's events follow in
    their order, and the chain's outcome sits right before the bridge records settling it."""
    settled = next((i for i, e in enumerate(bridge)
                    if e.event in ("fulfilled", "failed-on-chain", "closed")), len(bridge))
    return [*chain_start, *bridge[:settled], *chain_end, *bridge[settled:]]


def _spec_fields(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _spec_detail(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    if text is None:
        return None, None
    try:
        parse_spec(text)
    except SpecError as exc:
        data = _spec_fields(text)
        return data or None, str(exc)
    return _spec_fields(text), None
