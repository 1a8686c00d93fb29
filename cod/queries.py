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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3
from web3.contract import Contract

from bridge.chain import ZERO_ADDRESS, JobStatus, OnChainJob, connect, job_manager, read_job
from bridge.config import BridgeSettings
from bridge.events import UndecodableRequest
from bridge.ledger import IN_FLIGHT, JobState, Ledger, NewJob
from bridge.ledger import Job as LedgerJob
from bridge.logscan import DEFAULT_SCAN_BLOCKS, LogScanner, RequestLog
from bridge.terms import result_digest
from bridge.timeline import SETTLED
from cod.jobs import read_existing_job, terms_of
from cod.views import (
    STATUSES,
    Finalization,
    JobDetail,
    JobPage,
    JobSummary,
    OperatorActivity,
    Status,
    TimelineEntry,
    iso,
)
from protocol.spec import SpecError, parse_spec

_DURATION_RE = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# the chain's timeline events are named for the status the job reached
_TERMINAL = {"JobCompleted": Status.COMPLETED, "JobFailed": Status.FAILED,
             "JobCancelled": Status.CANCELLED}
CALLBACK_FAILED = "callback-failed"  # a chain timeline event: the consumer's callback reverted


@dataclass(frozen=True)
class JobResult:
    """A completed job's result, from its `JobCompleted` event (v2: the job view holds only the
    result's digest). `verified`: the event's result hashes to the chain's `resultDigest`."""

    result_cid: str
    exit_code: int
    result: bytes = b""
    operator: str = ZERO_ADDRESS
    verified: bool | None = None  # None: not checked (the job is not completed on-chain)

    @property
    def result_hex(self) -> str:
        return "0x" + self.result.hex()

    @property
    def result_text(self) -> str | None:
        """The small result as UTF-8 text, if it is printable text (else None)."""
        return printable_text(self.result)


def printable_text(data: bytes) -> str | None:
    """`data` as UTF-8 text when it decodes and is printable (tabs and newlines allowed)."""
    if not data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\t\n\r" for c in text) else None


def result_from_event(args: dict[str, Any], on_chain: OnChainJob | None = None
                      ) -> JobResult | None:
    """A `JobResult` from `JobCompleted`'s args (None if the log did not decode), checked against
    the digest of `on_chain` when it is completed."""
    if "resultCid" not in args or "exitCode" not in args:
        return None
    cid, code = str(args["resultCid"]), int(args["exitCode"])
    result = bytes(args.get("result") or b"")
    verified = None
    if on_chain is not None and on_chain.status == JobStatus.COMPLETED:
        verified = result_digest(cid, code, result) == on_chain.digest
    return JobResult(cid, code, result, str(args.get("operator") or ZERO_ADDRESS), verified)


# -- the network's events of one job (JobManager v2) ---------------------------------------------
# events whose first indexed topic is the job id; `Slashed(operator, jobId, …)` has it second
NETWORK_EVENTS = ("ClaimersSet", "JobClaimed", "LeaseLapsed", "ResultCommitted", "RevealOpened",
                  "ResultRevealed", "JobFinalized")
SLASHED = "Slashed"
NETWORK_KINDS = {"ClaimersSet": "claimers-set", "JobClaimed": "claimed",
                 "LeaseLapsed": "lease-lapsed", "ResultCommitted": "committed",
                 "RevealOpened": "reveal-opened", "ResultRevealed": "revealed",
                 "JobFinalized": "finalized", SLASHED: "slashed"}
SLASH_REASONS = {1: "lapse", 2: "disagreement", 3: "no reveal"}


@dataclass(frozen=True)
class ChainEvent:
    """One decoded network event of a job (see `NETWORK_EVENTS`, `SLASHED`)."""

    name: str
    args: Mapping[str, Any]
    block_number: int
    log_index: int
    tx_hash: str


def _event_topics(manager: Contract) -> dict[bytes, str]:
    abi: list[dict[str, Any]] = [dict(e) for e in manager.abi]
    return {bytes(event_abi_to_log_topic(e)): str(e["name"])  # type: ignore[arg-type]
            for e in abi if e.get("type") == "event"
            and e.get("name") in (*NETWORK_EVENTS, SLASHED)}


def network_logs(scanner: LogScanner, job_id: int, low: int, high: int) -> list[ChainEvent]:
    """The network events of `job_id` in blocks low..high (oldest first), read with the indexed
    job id as a topic filter, in the scanner's windows and within its budget."""
    topics = _event_topics(scanner.manager)
    word = "0x" + job_id.to_bytes(32, "big").hex()
    by_job = [[Web3.to_hex(t) for t, name in topics.items() if name != SLASHED], word]
    slashed = [[Web3.to_hex(t) for t, name in topics.items() if name == SLASHED], None, word]
    raws = scanner.logs(by_job, low, high) + scanner.logs(slashed, low, high)
    return decode_network_logs(scanner.manager, raws, job_id)


def decode_network_logs(manager: Contract, raws: Iterable[Mapping[str, Any]], job_id: int
                        ) -> list[ChainEvent]:
    """Decode raw logs with the contract's event ABIs (web3's `process_log`), oldest first; logs
    of other events or jobs, removed (reorged) ones and ones that do not decode are left out."""
    topics = _event_topics(manager)
    events: dict[tuple[int, int], ChainEvent] = {}
    for raw in raws:
        if raw.get("removed") or not raw.get("topics"):
            continue
        name = topics.get(bytes(raw["topics"][0]))
        if name is None:
            continue
        try:
            entry = getattr(manager.events, name)().process_log(raw)
        except Exception:  # not a log this contract emits: nothing to show
            continue
        args = dict(entry["args"])
        if int(args.get("jobId", -1)) != job_id:
            continue
        tx = entry["transactionHash"]
        key = (int(entry["blockNumber"]), int(entry["logIndex"]))
        events[key] = ChainEvent(name, args, key[0], key[1],
                                 tx if isinstance(tx, str) else Web3.to_hex(tx))
    return [events[key] for key in sorted(events)]


def _hex(value: Any) -> str:
    return Web3.to_hex(bytes(value))


def network_view(events: Sequence[ChainEvent], result_digest: bytes | None = None
                 ) -> tuple[list[OperatorActivity], Finalization | None, str | None, list[str]]:
    """(each operator's part, the finalization, the reveal phase's end, a restricted request's
    claimers) from a job's network events; `result_digest`: the completed job's (agreement)."""
    operators: dict[str, dict[str, Any]] = {}
    finalized, reveal_end, claimers = None, None, []
    for event in events:
        args = event.args
        if event.name == "ClaimersSet":
            claimers = [str(a) for a in args["claimers"]]
            continue
        if event.name == "RevealOpened":
            reveal_end = iso(int(args["revealEnd"]))
            continue
        if event.name == "JobFinalized":
            finalized = Finalization(agreeing=int(args["agreeing"]),
                                     slashed_wei=str(int(args["slashed"])))
            continue
        who = str(args["operator"])
        seen = operators.setdefault(who.lower(), {"operator": who, "slashed_wei": 0,
                                                  "slash_reasons": []})
        if event.name == "JobClaimed":
            seen["lease_end"] = iso(int(args["leaseEnd"]))
        elif event.name == "LeaseLapsed":
            seen["lapsed"], seen["penalty_wei"] = True, str(int(args["penalty"]))
        elif event.name == "ResultCommitted":
            seen["commitment"] = _hex(args["commitment"])
        elif event.name == "ResultRevealed":
            seen["answer"] = _hex(args["answer"])
            if result_digest is not None:
                seen["agrees"] = bytes(args["answer"]) == bytes(result_digest)
        elif event.name == SLASHED:
            seen["slashed_wei"] += int(args["amount"])
            reason = int(args["reason"])
            seen["slash_reasons"].append(SLASH_REASONS.get(reason, f"reason {reason}"))
    activity = [OperatorActivity(**dict(seen, slashed_wei=str(seen["slashed_wei"])))
                for seen in operators.values()]
    return activity, finalized, reveal_end, claimers


def network_detail(event: ChainEvent, result_digest: bytes | None = None) -> str:
    """A network event as a timeline line's detail."""
    args = event.args
    if event.name == "ClaimersSet":
        return "only " + ", ".join(str(a) for a in args["claimers"]) + " may claim it"
    if event.name == "JobClaimed":
        return f"by {args['operator']}, lease until {iso(int(args['leaseEnd']))}"
    if event.name == "LeaseLapsed":
        return f"{args['operator']}'s lease lapsed: penalty {int(args['penalty'])} wei"
    if event.name == "ResultCommitted":
        return f"by {args['operator']}: {_hex(args['commitment'])}"
    if event.name == "RevealOpened":
        return f"until {iso(int(args['revealEnd']))}"
    if event.name == "ResultRevealed":
        agreement = ("" if result_digest is None else " (agrees with the result)"
                     if bytes(args["answer"]) == bytes(result_digest)
                     else " (differs from the result)")
        return f"by {args['operator']}: {_hex(args['answer'])}{agreement}"
    if event.name == "JobFinalized":
        return f"{int(args['agreeing'])} agreeing, {int(args['slashed'])} wei slashed"
    if event.name == SLASHED:
        reason = int(args["reason"])
        return (f"{args['operator']} lost {int(args['amount'])} wei "
                f"({SLASH_REASONS.get(reason, f'reason {reason}')})")
    return ""


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
    result: JobResult | None = None  # a completed job's result (its `JobCompleted` event)

    @property
    def rank(self) -> int:
        """Stages only move forward: a later poll never shows an earlier stage."""
        return stage_rank(self.stage)

    @property
    def done(self) -> bool:
        """Settled on-chain (completed, failed or cancelled): nothing more will happen."""
        return not self.job.status.open

    @property
    def result_cid(self) -> str | None:
        return self.result.result_cid if self.result is not None else None

    @property
    def exit_code(self) -> int | None:
        return self.result.exit_code if self.result is not None else None


MAX_PAGE = 1000  # jobs per page, at most
MAX_EXAMINED = 2000  # without a ledger: requests looked at (one getJob each) for one page
MAX_SPEC_FIELDS_BYTES = 256 * 1024  # larger specs are not parsed for the list's engine/image
UNDECODABLE = "undecodable request"
_CURSOR_RE = re.compile(r"^(\d{1,20})?(?:@(\d{1,20}))?$")
_LEDGER_STATES: dict[str | None, tuple[str, ...] | None] = {  # the states a status may be in
    None: tuple(s for s in JobState if s != JobState.REORGED),
    Status.REQUESTED: (*IN_FLIGHT, JobState.ABANDONED, JobState.CLOSED),  # closed: maybe open
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
        # results are looked up while a page's requests are being scanned: a scanner of their own
        self._results = LogScanner(self.w3, self.manager, settings.log_chunk_blocks, scan_blocks)
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
        result_cid, exit_code = job.result_cid, job.exit_code  # ours, if we settled it
        if completed and on_chain is not None and job.state != JobState.COMPLETED:
            found = self.result(job.job_id, on_chain, job.block_number)  # maybe another's
            if found is not None:
                result_cid, exit_code = found.result_cid, found.exit_code
        spec = _spec_fields(job.spec)
        return JobSummary(
            id=job.job_id, status=status,
            requester=job.requester, consumer=job.consumer, fee_wei=job.fee_wei,
            requested_at=iso(job.created_at), deadline=iso(job.deadline) or "",
            engine=_text(spec.get("engine", "docker")), image=_text(spec.get("image")),
            result_cid=result_cid or None if completed else None,
            exit_code=exit_code if completed else None,
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
        if isinstance(decoded, UndecodableRequest):  # v2: the terms are only in the request
            return JobSummary(
                id=job_id or 0, status=status, requester="", consumer="", fee_wei="0",
                requested_at=requested_at, deadline="", engine=None,
                reason=f"{UNDECODABLE}: {decoded.reason}")
        result = (self.result(decoded.job_id, on_chain, entry.block_number)
                  if completed and on_chain is not None else None)
        spec = _spec_fields(decoded.spec) if decoded.reason is None else {}
        return JobSummary(
            id=decoded.job_id, status=status,
            requester=decoded.requester, consumer=decoded.consumer,
            fee_wei=str(decoded.fee_wei), requested_at=requested_at,
            deadline=iso(decoded.deadline) or "",
            engine=_text(spec.get("engine", "docker")) if decoded.reason is None else None,
            image=_text(spec.get("image")),
            result_cid=result.result_cid or None if result is not None else None,
            exit_code=result.exit_code if result is not None else None,
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
        end_block: int | None = None
        if end is not None:
            name, entry = end
            end_args = entry["args"]
            kind = _TERMINAL[name]
            detail = {Status.COMPLETED: f"{end_args.get('resultCid')} exit "
                                        f"{end_args.get('exitCode')}",
                      Status.FAILED: str(end_args.get("reason", ""))}.get(kind, "")
            chain_end.append(self._chain_entry(entry, kind, detail))
            block = end_block = int(entry["blockNumber"])
            for failed in self.scanner.events("CallbackFailed", job_id, block, block):
                chain_end.append(self._chain_entry(failed, CALLBACK_FAILED,
                                                   "the consumer's callback reverted"))
        # the network's part: claims and lapses before the outcome, commits and reveals in block
        # order around it, finalization and slashing after it
        digest = on_chain.digest if on_chain.status == JobStatus.COMPLETED else None
        replicas = decoded.replicas if isinstance(decoded, NewJob) else (
            ledger_job.replicas if ledger_job is not None else 0)
        # nothing happens after a settlement but a replicated completion's finalize
        last = (end_block if end_block is not None and (
            replicas == 1 or on_chain.status != JobStatus.COMPLETED)
            else int(self.w3.eth.block_number))
        network = network_logs(self.scanner, job_id,
                               request.block_number if request is not None
                               else self.settings.start_block, last)
        operators, finalized, reveal_end, allowed = network_view(network, digest)
        before_end: list[TimelineEntry] = []
        after_end: list[TimelineEntry] = []
        for event in network:
            line = self._chain_entry({"blockNumber": event.block_number,
                                      "transactionHash": event.tx_hash},
                                     NETWORK_KINDS[event.name], network_detail(event, digest))
            if event.name in ("ClaimersSet", "JobClaimed", "LeaseLapsed"):
                chain_start.append(line)
            elif end_block is not None and event.block_number > end_block:
                after_end.append(line)
            else:
                before_end.append(line)
        chain_end = [*before_end, *chain_end, *after_end]
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
        # v2: who asked, the fee and the deadline are the request's terms (not stored on-chain)
        terms: NewJob | LedgerJob | None = (decoded if isinstance(decoded, NewJob)
                                            else ledger_job)
        result = (result_from_event(end_args, on_chain)
                  if on_chain.status == JobStatus.COMPLETED else None)
        if result is None and on_chain.status == JobStatus.COMPLETED and ledger_job is not None \
                and ledger_job.state == JobState.COMPLETED and ledger_job.result_cid:
            result = JobResult(ledger_job.result_cid, int(ledger_job.exit_code or 0))
        claimed = on_chain.status == JobStatus.CLAIMED and on_chain.claimer != ZERO_ADDRESS
        return JobDetail(
            id=job_id, status=status,
            requester=terms.requester if terms else "", consumer=terms.consumer if terms else "",
            fee_wei=str(terms.fee_wei) if terms else "0",
            deadline=iso(terms.deadline) or "" if terms else "",
            requested_at=iso(self._block_time(request_block)) if request_block else None,
            engine=_text((spec_data or {}).get("engine", "docker")),
            image=_text((spec_data or {}).get("image")),
            result_cid=result.result_cid or None if result else None,
            exit_code=result.exit_code if result else None,
            result_hex=result.result_hex if result and end_args else None,
            result_text=result.result_text if result else None,
            result_verified=result.verified if result else None,
            chain_status=on_chain.status.name.lower(),
            claimer=on_chain.claimer if claimed else None,
            lease_end=iso(on_chain.lease_end) if claimed and on_chain.lease_end else None,
            replicas=terms.replicas if terms else None,
            lease_seconds=terms.lease_s if terms else None,
            restricted=terms.restricted if terms else None,
            allowed_claimers=allowed, operators=operators, reveal_end=reveal_end,
            finalized=finalized,
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
        """The job's request log: at the ledger's block, else in a bounded scan down from the
        head (v2: the chain no longer holds the deadline that located the request). A request
        found for an open job is the job's only if its terms hash to the chain's digest."""
        if ledger_job is not None:
            found = self.scanner.find_request(job_id, ledger_job.block_number,
                                              ledger_job.block_number)
            if found is not None:
                return found
        head = int(self.w3.eth.block_number)
        found = self.scanner.find_request(job_id, self.settings.start_block,
                                          self._request_block_bound(job_id, head, on_chain))
        if (found is not None and isinstance(found.decoded, NewJob) and on_chain.status.open
                and terms_of(found.decoded).digest() != on_chain.digest):
            return None  # a request of that id that is not the job on-chain (reorged out)
        return found

    def _request_block_bound(self, job_id: int, head: int, on_chain: OnChainJob | None = None
                             ) -> int:
        """A block at or above the job's request. v2 keeps no deadline on-chain to bound it by:
        the head (the scans go newest first, so recent jobs are found in the first windows)."""
        return head

    def result(self, job_id: int, on_chain: OnChainJob | None = None, low: int | None = None
               ) -> JobResult | None:
        """A completed job's result, from its `JobCompleted` event at or after block `low` (its
        request's), checked against the chain's result digest; None if not completed (or the
        event is not within the scan budget)."""
        on_chain = on_chain or self.read(job_id)
        if on_chain.status != JobStatus.COMPLETED:
            return None
        if low is None:
            request = self._find_request(job_id, on_chain, None)
            low = request.block_number if request is not None else self.settings.start_block
        entry = next(iter(self._results.events("JobCompleted", job_id, low,
                                               int(self.w3.eth.block_number))), None)
        return result_from_event(entry["args"], on_chain) if entry is not None else None

    def _end_event(self, job_id: int, on_chain: OnChainJob, request: RequestLog | None
                   ) -> tuple[str, dict[str, Any]] | None:
        name = _END_EVENT.get(on_chain.status)
        if name is None:
            return None
        low = request.block_number if request is not None else self.settings.start_block
        entry = next(iter(self.scanner.events(name, job_id, low, int(self.w3.eth.block_number))),
                     None)
        return (name, entry) if entry is not None else None

    # -- progress --------------------------------------------------------------------------------
    def progress(self, job_id: int, task_state: Any = None) -> Progress:
        """The job's stage now. `task_state(task_id) -> (state, node)` reads Celery, if given."""
        job = self.read(job_id)
        ledger_job = (self.ledger.get(self.chain_id, self.address, job_id)
                      if self.ledger is not None else None)
        if not job.status.open:
            stage = {JobStatus.COMPLETED: Stage.FULFILLED, JobStatus.FAILED: Stage.FAILED,
                     JobStatus.CANCELLED: Stage.CANCELLED}[job.status]
            result, detail = None, ""
            if job.status == JobStatus.COMPLETED:
                result = self.result(job_id, job,
                                     ledger_job.block_number if ledger_job is not None else None)
                if result is None and ledger_job is not None and ledger_job.result_cid \
                        and ledger_job.state == JobState.COMPLETED:  # beyond the scan budget
                    result = JobResult(ledger_job.result_cid, int(ledger_job.exit_code or 0))
                detail = result.result_cid if result is not None else ""
            if job.status == JobStatus.FAILED:
                detail = ledger_job.reason or "" if ledger_job is not None else ""
                if not detail:
                    end = self._end_event(job_id, job, self._find_request(job_id, job, None))
                    detail = str(end[1]["args"].get("reason", "")) if end else ""
            return Progress(stage, detail, job, ledger_job.task_id if ledger_job else None,
                            ledger_job.node if ledger_job else None, result)
        held = _held_detail(job)
        if ledger_job is None or ledger_job.state in (JobState.REQUESTED, JobState.CLOSED,
                                                      JobState.ABANDONED):
            # not (or no longer) ours: the chain says whether an operator holds it
            if held:
                return Progress(Stage.RUNNING, held, job)
            return Progress(Stage.REQUESTED, "", job)
        if ledger_job.state in (JobState.CLAIMING, JobState.CLAIMED):
            detail = "claiming" if ledger_job.state == JobState.CLAIMING else held or "claimed"
            return Progress(Stage.REQUESTED, detail, job)
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
    """The status users see for a job the chain knows (not `JobStatus.NONE`): a claimed or
    revealing job (v2) is still requested, to users (its stage says it is running)."""
    if status.open:
        return Status.REQUESTED
    return Status(status.name.lower())


def _held_detail(job: OnChainJob) -> str:
    """What an open job's chain state says about who runs it ("" if nobody holds it)."""
    if job.status == JobStatus.REVEALING:
        return "replicas are revealing their results"
    if job.status == JobStatus.CLAIMED:
        if job.claimer != ZERO_ADDRESS:
            return f"claimed by {job.claimer}, lease until {iso(job.lease_end)}"
        return "replicas claimed it"
    return ""


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
