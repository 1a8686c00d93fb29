"""The read side of jobs: on-chain state and events, merged with the bridge's ledger when one is
configured (`COD_LEDGER_URL`). Works from chain data alone when none is.

The ledger is used read-only, through its own methods (`jobs_page`, `get`, `timeline`). Without
one, logs are read in bounded windows (`bridge.logscan`): no read scans the whole history, and a
request whose bytes do not decode is listed as an "undecodable request", never an error.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

from bridge.chain import JobStatus, OnChainJob, connect, job_manager, read_job
from bridge.config import BridgeSettings
from bridge.events import UndecodableRequest
from bridge.ledger import IN_FLIGHT, JobState, Ledger, NewJob
from bridge.ledger import Job as LedgerJob
from bridge.logscan import DEFAULT_SCAN_BLOCKS, LogScanner, RequestLog
from bridge.timeline import SETTLED
from cod.jobs import read_existing_job
from cod.views import STATUSES, JobDetail, JobPage, JobSummary, Status, TimelineEntry, iso
from protocol.spec import SpecError, parse_spec

_DURATION_RE = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# the chain's timeline events are named for the status the job reached
_TERMINAL = {"JobCompleted": Status.COMPLETED, "JobFailed": Status.FAILED,
             "JobCancelled": Status.CANCELLED}
CALLBACK_FAILED = "callback-failed"  # a chain timeline event: the consumer's callback reverted
MIN_JOB_WINDOW_S = 60  # JobManager.MIN_JOB_WINDOW: a request is at least this long before its deadline


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


class Stage(StrEnum):
    """Where a job is now, for `--wait`: requested → queued → running → published → fulfilled
    (or rejected → failed, or cancelled)."""

    REQUESTED = "requested"  # on-chain; the bridge has not sent it to a node
    QUEUED = "queued"  # sent to the executors, not started
    RUNNING = "running"  # a node is running it (or ran it: the bridge has not collected it yet)
    PUBLISHED = "published"  # its result is on IPFS, to be fulfilled
    REJECTED = "rejected"  # it will be failed on-chain
    FULFILLED = "fulfilled"  # the chain has its result
    FAILED = "failed"  # failed on-chain
    CANCELLED = "cancelled"  # the requester cancelled it


_STAGE_RANK = {Stage.REQUESTED: 0, Stage.QUEUED: 1, Stage.RUNNING: 2, Stage.PUBLISHED: 3,
               Stage.REJECTED: 3}


def stage_rank(stage: Stage) -> int:
    """Stages only move forward: the order they come in (the end stages last)."""
    return _STAGE_RANK.get(stage, 4)


@dataclass(frozen=True)
class Progress:
    """Where a job is now, for `--wait`."""

    stage: Stage
    detail: str
    job: OnChainJob
    task_id: str | None = None  # from the ledger, when one is configured
    node: str | None = None

    @property
    def rank(self) -> int:
        """Stages only move forward: a later poll never shows an earlier stage."""
        return stage_rank(self.stage)

    @property
    def done(self) -> bool:
        return self.job.status != JobStatus.REQUESTED


MAX_PAGE = 1000  # jobs per page, at most
MAX_EXAMINED = 2000  # without a ledger: requests looked at (one getJob each) for one page
MAX_SPEC_FIELDS_BYTES = 256 * 1024  # larger specs are not parsed for the list's engine/image
UNDECODABLE = "undecodable request"
_CURSOR_RE = re.compile(r"^(\d{1,20})?(?:@(\d{1,20}))?$")
_LEDGER_STATES: dict[str | None, tuple[str, ...] | None] = {  # the states a status may be in
    None: tuple(s for s in JobState if s != JobState.REORGED),
    Status.REQUESTED: (*IN_FLIGHT, JobState.ABANDONED),
    Status.COMPLETED: (JobState.COMPLETED, JobState.CLOSED, JobState.SUBMITTING),
    Status.FAILED: (JobState.FAILED, JobState.SUBMITTING),
    Status.CANCELLED: (JobState.CLOSED, JobState.ABANDONED),
}
_SHOWN_AS: dict[str, Status] = {  # a ledger state's status, unless the chain is asked (any other
    JobState.COMPLETED: Status.COMPLETED, JobState.FAILED: Status.FAILED,  # state: requested)
    JobState.CLOSED: Status.CANCELLED,
}
# the ledger does not know how these ended (or, submitting, whether the chain has settled it yet)
_ASK_CHAIN = frozenset({JobState.CLOSED, JobState.ABANDONED, JobState.SUBMITTING})
_END_EVENT = {JobStatus.COMPLETED: "JobCompleted", JobStatus.FAILED: "JobFailed",
              JobStatus.CANCELLED: "JobCancelled"}


def parse_cursor(text: str | None) -> tuple[int | None, int | None]:
    """`ID`, `ID@BLOCK` or `@BLOCK` (a page's `nextCursor`) → (job id, block)."""
    if text is None or text == "":
        return None, None
    match = _CURSOR_RE.match(text)
    if not match or not any(match.groups()):
        raise ValueError(f"not a cursor: {text!r} (pass a page's nextCursor back as it is)")
    job_id, block = match.groups()
    return (int(job_id) if job_id else None), (int(block) if block else None)


class JobReader:
    def __init__(self, settings: BridgeSettings, w3: Web3 | None = None,
                 ledger: Ledger | None = None, use_ledger: bool = True,
                 scan_blocks: int = DEFAULT_SCAN_BLOCKS) -> None:
        self.settings = settings
        self.w3 = w3 or connect(settings.rpc_url)
        self.manager: Contract = job_manager(self.w3, settings.require_contract())
        self.address = str(self.manager.address)
        self.ledger = ledger if ledger is not None or not use_ledger else open_ledger(settings)
        self.scanner = LogScanner(self.w3, self.manager, settings.log_chunk_blocks, scan_blocks)
        self._chain_id: int | None = None
        self._block_times: dict[int, int] = {}
        self._window: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # -- list ------------------------------------------------------------------------------------
    def list(self, status: str | None = None, requester: str | None = None,
             since: float | None = None, limit: int = 10, offset: int = 0,
             oldest_first: bool = False, cursor: str | None = None) -> JobPage:
        """One page of jobs: from the ledger when one is configured (one indexed query), else
        from logs read in bounded windows from the head (or the cursor) until the page is full."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        if requester:
            if not Web3.is_address(requester):
                raise ValueError(f"not an address: {requester!r}")
            requester = Web3.to_checksum_address(requester)
        limit = max(1, min(limit, MAX_PAGE))
        cursor_id, cursor_block = parse_cursor(cursor)
        min_block = (self._first_block_at(since, self.settings.start_block)
                     if since is not None else None)
        if self.ledger is not None:
            return self._list_ledger(self.ledger, status, requester or None, min_block, limit,
                                     offset, oldest_first, cursor_id)
        return self._list_chain(status, requester or None, min_block, limit, offset, oldest_first,
                                cursor_id, cursor_block)

    def _list_ledger(self, ledger: Ledger, status: str | None, requester: str | None,
                     min_block: int | None, limit: int, offset: int, oldest_first: bool,
                     cursor_id: int | None) -> JobPage:
        rows, total = ledger.jobs_page(
            self.chain_id, self.address, limit=limit,
            before_job_id=None if oldest_first else cursor_id,
            after_job_id=(cursor_id or 0) if oldest_first else None,
            states=_LEDGER_STATES[status], requester=requester, min_block=min_block,
            offset=offset)
        jobs = [self._ledger_summary(job) for job in rows]
        if status is not None:  # closed or submitting: the chain's status decides
            jobs = [job for job in jobs if job.status == status]
        full = len(rows) == limit
        next_offset = (offset + limit if cursor_id is None and offset + limit < total else None)
        return JobPage(jobs=jobs, total=total if cursor_id is None else None, offset=offset,
                       limit=limit, next_offset=next_offset,
                       next_cursor=str(rows[-1].job_id) if full else None)

    def _ledger_summary(self, job: LedgerJob) -> JobSummary:
        on_chain = (read_job(self.manager, job.job_id) if job.state in _ASK_CHAIN else None)
        if on_chain is not None and on_chain.status != JobStatus.NONE:
            status = _status(on_chain.status)
        else:
            status = _SHOWN_AS.get(JobState(job.state), Status.REQUESTED)
        completed = status == Status.COMPLETED
        spec = _spec_fields(job.spec)
        return JobSummary(
            id=job.job_id, status=status,
            requester=job.requester, consumer=job.consumer, fee_wei=job.fee_wei,
            requested_at=iso(job.created_at), deadline=iso(job.deadline) or "",
            engine=_text(spec.get("engine", "docker")), image=_text(spec.get("image")),
            result_cid=(on_chain.result_cid if on_chain else job.result_cid) or None if completed
            else None,
            exit_code=(on_chain.exit_code if on_chain else job.exit_code) if completed else None,
            reason=job.reason or None if not completed else None,  # rejected, submitting, failed
            bridge_state=job.state, node=job.node)

    def _list_chain(self, status: str | None, requester: str | None, min_block: int | None,
                    limit: int, offset: int, oldest_first: bool, cursor_id: int | None,
                    cursor_block: int | None) -> JobPage:
        head = int(self.w3.eth.block_number)
        low, high = max(self.settings.start_block, min_block or 0), head
        if oldest_first and cursor_block is not None:
            low = max(low, cursor_block)
        elif not oldest_first and cursor_block is not None:
            high = min(head, cursor_block)
        elif not oldest_first and cursor_id is not None:
            high = self._request_block_bound(cursor_id, head)
        jobs: list[JobSummary] = []
        skip, examined, last, stopped = offset, 0, None, False
        for entry in self.scanner.requests(low, high, requester, newest_first=not oldest_first):
            job_id = entry.job_id
            if cursor_id is not None and job_id is not None and (
                    job_id <= cursor_id if oldest_first else job_id >= cursor_id):
                continue
            examined += 1
            last = entry
            summary = self._chain_summary(entry)
            if status is None or summary.status == status:
                if skip:
                    skip -= 1
                else:
                    jobs.append(summary)
            if len(jobs) == limit or examined >= MAX_EXAMINED:
                stopped = True
                break
        next_cursor = None
        if stopped and last is not None:
            next_cursor = f"{last.job_id or ''}@{last.block_number}"
        elif self.scanner.exhausted_at is not None:  # out of budget: go on from where it stopped
            last_id = last.job_id if last is not None else cursor_id
            next_cursor = f"{last_id or ''}@{self.scanner.exhausted_at}"
        plain = status is None and requester is None and min_block is None and cursor_id is None
        total = self.job_count() if plain else None
        return JobPage(jobs=jobs, total=total, offset=offset, limit=limit,
                       next_offset=offset + limit if next_cursor and cursor_id is None else None,
                       next_cursor=next_cursor)

    def _chain_summary(self, entry: RequestLog) -> JobSummary:
        decoded, job_id = entry.decoded, entry.job_id
        on_chain = read_job(self.manager, job_id) if job_id is not None else None
        status = (_status(on_chain.status)
                  if on_chain is not None and on_chain.status != JobStatus.NONE
                  else Status.REQUESTED)
        completed = status == Status.COMPLETED and on_chain is not None
        requested_at = iso(self._block_time(entry.block_number))
        if isinstance(decoded, UndecodableRequest):
            return JobSummary(
                id=job_id or 0, status=status,
                requester=on_chain.requester if on_chain else "",
                consumer=on_chain.consumer if on_chain else "",
                fee_wei=str(on_chain.fee if on_chain else 0), requested_at=requested_at,
                deadline=iso(on_chain.deadline) or "" if on_chain else "", engine=None,
                reason=f"{UNDECODABLE}: {decoded.reason}")
        spec = _spec_fields(decoded.spec) if decoded.reason is None else {}
        return JobSummary(
            id=decoded.job_id, status=status,
            requester=decoded.requester, consumer=decoded.consumer,
            fee_wei=str(decoded.fee_wei), requested_at=requested_at,
            deadline=iso(decoded.deadline) or "",
            engine=_text(spec.get("engine", "docker")) if decoded.reason is None else None,
            image=_text(spec.get("image")),
            result_cid=on_chain.result_cid or None if completed and on_chain else None,
            exit_code=on_chain.exit_code if completed and on_chain else None,
            reason=f"{UNDECODABLE}: {decoded.reason}" if decoded.reason else None)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each on-chain status (for `/metrics`): from the ledger's index;
        without a ledger only the total is known cheaply (`total`)."""
        if self.ledger is None:
            return {}
        counts = {status: 0 for status in STATUSES}
        for state, count in self.ledger.count_by_state(self.chain_id, self.address).items():
            if state != JobState.REORGED:
                counts[_SHOWN_AS.get(state, Status.REQUESTED)] += count
        return counts

    def job_count(self) -> int:
        """Jobs ever requested (the contract's counter: one call, however long the history)."""
        return int(self.manager.functions.nextJobId().call()) - 1

    # -- describe --------------------------------------------------------------------------------
    def describe(self, job_id: int) -> JobDetail:
        on_chain = self.read(job_id)
        ledger_job = (self.ledger.get(self.chain_id, self.address, job_id)
                      if self.ledger is not None else None)
        request = self._find_request(job_id, on_chain, ledger_job)
        decoded = request.decoded if request is not None else None
        chain_start: list[TimelineEntry] = []
        if isinstance(decoded, NewJob):
            chain_start.append(self._chain_entry(
                {"blockNumber": decoded.block_number, "transactionHash": decoded.tx_hash},
                Status.REQUESTED, f"fee {decoded.fee_wei} wei"))
        end = self._end_event(job_id, on_chain, request)
        chain_end: list[TimelineEntry] = []
        end_args: dict[str, Any] = {}
        if end is not None:
            name, entry = end
            end_args = entry["args"]
            kind = _TERMINAL[name]
            detail = {Status.COMPLETED: f"{end_args.get('resultCid')} exit "
                                        f"{end_args.get('exitCode')}",
                      Status.FAILED: str(end_args.get("reason", ""))}.get(kind, "")
            chain_end.append(self._chain_entry(entry, kind, detail))
            block = int(entry["blockNumber"])
            for failed in self.scanner.events("CallbackFailed", job_id, block, block):
                chain_end.append(self._chain_entry(failed, CALLBACK_FAILED,
                                                   "the consumer's callback reverted"))
        bridge: list[TimelineEntry] = []
        if self.ledger is not None:
            bridge = [TimelineEntry(at=iso(event.at) or "", source="bridge", event=event.kind,
                                    detail=event.detail)
                      for event in self.ledger.timeline(self.chain_id, self.address, job_id)]
        timeline = _merge(chain_start, bridge, chain_end)
        if isinstance(decoded, NewJob):
            spec_text: str | None = decoded.spec
            spec_data, spec_error = _spec_detail(spec_text)
            if decoded.reason:
                spec_data, spec_error = None, f"{UNDECODABLE}: {decoded.reason}"
        elif isinstance(decoded, UndecodableRequest):
            spec_text, spec_data, spec_error = None, None, f"{UNDECODABLE}: {decoded.reason}"
        else:
            spec_text = ledger_job.spec if ledger_job is not None else None
            spec_data, spec_error = _spec_detail(spec_text)
        status = _status(on_chain.status)
        request_block = request.block_number if request is not None else None
        return JobDetail(
            id=job_id, status=status,
            requester=on_chain.requester, consumer=on_chain.consumer,
            fee_wei=str(on_chain.fee), deadline=iso(on_chain.deadline) or "",
            requested_at=iso(self._block_time(request_block)) if request_block else None,
            engine=_text((spec_data or {}).get("engine", "docker")),
            image=_text((spec_data or {}).get("image")),
            result_cid=on_chain.result_cid or None,
            exit_code=on_chain.exit_code if on_chain.status == JobStatus.COMPLETED else None,
            reason=str(end_args.get("reason") or "") or None if status == Status.FAILED else None,
            bridge_state=ledger_job.state if ledger_job else None,
            node=ledger_job.node if ledger_job else None,
            request_block=request_block,
            request_tx=decoded.tx_hash if isinstance(decoded, NewJob | UndecodableRequest) else None,
            spec=spec_data, spec_text=spec_text, spec_error=spec_error, timeline=timeline,
        )

    def read(self, job_id: int) -> OnChainJob:
        return read_existing_job(self.manager, job_id)

    def _find_request(self, job_id: int, on_chain: OnChainJob, ledger_job: LedgerJob | None
                      ) -> RequestLog | None:
        """The job's request log: at the ledger's block, else at the block whose time is the
        deadline minus the job window, else in a bounded scan below the latest possible block."""
        if ledger_job is not None:
            found = self.scanner.find_request(job_id, ledger_job.block_number,
                                              ledger_job.block_number)
            if found is not None:
                return found
        head = int(self.w3.eth.block_number)
        guess = self._first_block_at(on_chain.deadline - self._job_window(),
                                     self.settings.start_block)
        if guess <= head:
            found = self.scanner.find_request(job_id, guess, min(head, guess + 63))
            if found is not None:
                return found
        return self.scanner.find_request(job_id, self.settings.start_block,
                                         self._request_block_bound(job_id, head, on_chain))

    def _request_block_bound(self, job_id: int, head: int, on_chain: OnChainJob | None = None
                             ) -> int:
        """A block at or above the job's request: requests come at least MIN_JOB_WINDOW before
        their deadline."""
        job = on_chain or read_job(self.manager, job_id)
        if job.status == JobStatus.NONE:
            return head
        return min(head, self._first_block_at(job.deadline - MIN_JOB_WINDOW_S + 1,
                                              self.settings.start_block))

    def _end_event(self, job_id: int, on_chain: OnChainJob, request: RequestLog | None
                   ) -> tuple[str, dict[str, Any]] | None:
        name = _END_EVENT.get(on_chain.status)
        if name is None:
            return None
        low = request.block_number if request is not None else self.settings.start_block
        entry = next(iter(self.scanner.events(name, job_id, low, int(self.w3.eth.block_number))),
                     None)
        return (name, entry) if entry is not None else None

    def _job_window(self) -> int:
        if self._window is None:
            self._window = int(self.manager.functions.jobWindow().call())
        return self._window

    # -- progress --------------------------------------------------------------------------------
    def progress(self, job_id: int, task_state: Any = None) -> Progress:
        """The job's stage now. `task_state(task_id) -> (state, node)` reads Celery, if given."""
        job = self.read(job_id)
        ledger_job = (self.ledger.get(self.chain_id, self.address, job_id)
                      if self.ledger is not None else None)
        if job.status != JobStatus.REQUESTED:
            stage = {JobStatus.COMPLETED: Stage.FULFILLED, JobStatus.FAILED: Stage.FAILED,
                     JobStatus.CANCELLED: Stage.CANCELLED}[job.status]
            detail = job.result_cid
            if job.status == JobStatus.FAILED:
                detail = ledger_job.reason or "" if ledger_job is not None else ""
                if not detail:
                    end = self._end_event(job_id, job, self._find_request(job_id, job, None))
                    detail = str(end[1]["args"].get("reason", "")) if end else ""
            return Progress(stage, detail, job, ledger_job.task_id if ledger_job else None,
                            ledger_job.node if ledger_job else None)
        if ledger_job is None or ledger_job.state == JobState.REQUESTED:
            return Progress(Stage.REQUESTED, "", job)
        task_id, node = ledger_job.task_id, ledger_job.node
        if ledger_job.state == JobState.DISPATCHED:
            if task_state is not None and task_id:
                state, node = task_state(task_id)
                if state in ("STARTED", "RETRY", "SUCCESS", "FAILURE"):  # ran, not yet collected
                    return Progress(Stage.RUNNING, f"on {node}", job, task_id, node)
            return Progress(Stage.QUEUED, task_id or "", job, task_id)
        if ledger_job.state == JobState.REJECTED:
            return Progress(Stage.REJECTED, ledger_job.reason or "", job, task_id, node)
        return Progress(Stage.PUBLISHED, f"on {node}: {ledger_job.result_cid} "
                        f"exit {ledger_job.exit_code}", job, task_id, node)

    # -- helpers ---------------------------------------------------------------------------------
    def _chain_entry(self, entry: Any, kind: str, detail: str) -> TimelineEntry:
        tx = entry["transactionHash"]
        tx = tx if isinstance(tx, str) else Web3.to_hex(tx)
        return TimelineEntry(at=iso(self._block_time(int(entry["blockNumber"]))) or "",
                             source="chain", event=kind,
                             detail=f"{detail} (block {int(entry['blockNumber'])}, tx {tx})".strip())

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
                    if e.event in SETTLED), len(bridge))
    return [*chain_start, *bridge[:settled], *chain_end, *bridge[settled:]]


def _status(status: JobStatus) -> Status:
    """The status users see for a job the chain knows (not `JobStatus.NONE`)."""
    return Status(status.name.lower())


def _spec_fields(text: str) -> dict[str, Any]:
    """The spec as JSON, if it is a JSON object; never raises (the spec is the requester's)."""
    if len(text) > MAX_SPEC_FIELDS_BYTES:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # bad JSON, a 5,000-digit number, 3,000-deep nesting
        return {}
    if not isinstance(data, dict):
        return {}
    try:  # `\ud800` escapes decode to lone surrogates, which no response can encode
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        return {}
    return data


def _text(value: Any) -> str | None:
    """A spec field shown in a list: text of a sane length, or nothing."""
    if not isinstance(value, str) or len(value) > 512:
        return None
    try:
        value.encode("utf-8")  # no lone surrogates
    except UnicodeEncodeError:
        return None
    return value


def _spec_detail(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    if text is None:
        return None, None
    try:
        parse_spec(text)
    except SpecError as exc:
        data = _spec_fields(text)
        return data or None, str(exc)
    except (ValueError, RecursionError) as exc:  # until parse_spec is total (issue 11)
        return _spec_fields(text) or None, f"invalid spec: {type(exc).__name__}"
    return _spec_fields(text), None
