"""The bridge's durable state: SQLAlchemy 2, SQLite by default, PostgreSQL (or any SQLAlchemy URL)
by configuration. The schema is managed by Alembic (`bridge/migrations/`), applied on open.

It holds the listener checkpoint and the recent block hashes (for reorg detection), every job seen,
every execution attempt, every outgoing transaction and a timeline of events per job. Jobs are keyed
by `(chain_id, contract, job_id)`, so an event read twice is recorded once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bridge.timeline import IN_FLIGHT as IN_FLIGHT
from bridge.timeline import TERMINAL as TERMINAL
from bridge.timeline import EventKind
from bridge.timeline import JobState as JobState


class TxStatus(StrEnum):
    """Transaction states, as Chainlink's transaction manager names them."""

    UNSTARTED = "unstarted"  # recorded, no nonce yet
    IN_PROGRESS = "in_progress"  # nonce assigned and signed; maybe sent
    UNCONFIRMED = "unconfirmed"  # sent, not yet mined
    CONFIRMED = "confirmed"  # mined (see `succeeded`)
    FATAL = "fatal"  # could not be sent (e.g. estimation reverted); nonce not used


class Base(DeclarativeBase):
    pass


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))


class SeenBlock(Base):
    """Hashes of recently processed blocks: where to rewind to after a reorg."""

    __tablename__ = "blocks"
    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    block_hash: Mapped[str] = mapped_column(String(66))


class Job(Base):
    __tablename__ = "jobs"
    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    requester: Mapped[str] = mapped_column(String(42))
    consumer: Mapped[str] = mapped_column(String(42))
    spec: Mapped[str] = mapped_column(Text)
    fee_wei: Mapped[str] = mapped_column(String(80))
    deadline: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66), default="")
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)
    pre_reorg_state: Mapped[str | None] = mapped_column(String(16))  # restored if re-included
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[str | None] = mapped_column(String(200))
    broker_epoch: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[float | None] = mapped_column()
    node: Mapped[str | None] = mapped_column(String(200))
    routed_node: Mapped[str | None] = mapped_column(String(200))  # sent to this node's data
    result_cid: Mapped[str | None] = mapped_column(String(200))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(Text, default="")  # the small result, hex (0005)
    reason: Mapped[str | None] = mapped_column(Text)
    submit_tx_id: Mapped[int | None] = mapped_column(BigInteger)
    submit_tx: Mapped[str | None] = mapped_column(String(66))
    submit_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column()
    updated_at: Mapped[float] = mapped_column()
    callback_gas_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    request_hash: Mapped[str | None] = mapped_column(String(66))  # binds a settlement to this request
    started_at: Mapped[float | None] = mapped_column()  # when the current attempt started on a node
    errors: Mapped[int] = mapped_column(Integer, default=0)  # unexpected errors handling this job
    not_before: Mapped[float] = mapped_column(default=0.0)  # no step looks at the job before then
    # v2 (0004): the rest of the request's `Terms`, quoted back by every call (bridge.terms)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    lease_s: Mapped[int] = mapped_column(BigInteger, default=0)
    restricted: Mapped[bool] = mapped_column(default=False)
    # our claim: the claimJob transaction, its confirmed lease end (chain time), tries so far
    claim_tx_id: Mapped[int | None] = mapped_column(BigInteger)
    lease_end: Mapped[int | None] = mapped_column(BigInteger)
    claim_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # replicated jobs (0006): the salt of our commitment, hex, stored before it is sent
    salt: Mapped[str | None] = mapped_column(String(66))

    @property
    def key(self) -> str:
        return job_key(self.chain_id, self.contract, self.job_id)


class Attempt(Base):
    """One execution of a job on a node (a job may run more than once: late acks, re-dispatch)."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_job", "chain_id", "contract", "job_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(42))
    job_id: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[str] = mapped_column(String(200), unique=True)
    queued_at: Mapped[float] = mapped_column()
    node: Mapped[str | None] = mapped_column(String(200))
    finished_at: Mapped[float | None] = mapped_column()
    duration_s: Mapped[float | None] = mapped_column()
    exit_code: Mapped[int | None] = mapped_column(Integer)
    result_cid: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)


class Transaction(Base):
    """An outgoing transaction. `idempotency_key` makes "send the result of job X" happen once."""

    __tablename__ = "transactions"
    __table_args__ = (UniqueConstraint("chain_id", "sender", "nonce", name="uq_tx_nonce"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    sender: Mapped[str] = mapped_column(String(42), index=True)
    to: Mapped[str] = mapped_column(String(42))
    data: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(String(80), default="0")
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    gas: Mapped[int | None] = mapped_column(BigInteger)
    max_fee: Mapped[str | None] = mapped_column(String(80))
    priority_fee: Mapped[str | None] = mapped_column(String(80))
    tx_hash: Mapped[str | None] = mapped_column(String(66))  # the latest (possibly bumped) one
    all_hashes: Mapped[str] = mapped_column(Text, default="")  # every hash sent, comma-separated
    raw: Mapped[str | None] = mapped_column(Text)  # the signed latest transaction, for re-sending
    status: Mapped[str] = mapped_column(String(16), index=True)
    succeeded: Mapped[bool | None] = mapped_column()
    sent_block: Mapped[int | None] = mapped_column(BigInteger)
    mined_block: Mapped[int | None] = mapped_column(BigInteger)
    bumps: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column()
    updated_at: Mapped[float] = mapped_column()
    max_cost: Mapped[str | None] = mapped_column(String(80))  # wei the job pays: gas × fee stays below
    not_before: Mapped[float] = mapped_column(default=0.0)  # retry after a transient RPC error
    tries: Mapped[int] = mapped_column(Integer, default=0)  # transient errors building it

    def hashes(self) -> list[str]:
        return [h for h in self.all_hashes.split(",") if h]


class JobEvent(Base):
    """One line of a job's timeline (`cod job describe`)."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "chain_id", "contract", "job_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(42))
    job_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[float] = mapped_column()
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


def job_key(chain_id: int, contract: str, job_id: int) -> str:
    """The idempotency key of a job everywhere: ledger, Celery task ids, logs."""
    return f"{chain_id}:{contract.lower()}:{job_id}"


@dataclass(frozen=True)
class NewJob:
    job_id: int
    requester: str
    consumer: str
    spec: str
    fee_wei: int
    deadline: int
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    callback_gas_limit: int = 0
    request_hash: str | None = None
    reason: str | None = None  # set: the request is failed as it stands (e.g. a spec that is not UTF-8)
    replicas: int = 1
    lease_s: int = 0
    restricted: bool = False


RECENT_BLOCKS_KEPT = 2048
_IN_BATCH = 500  # values per `IN (…)`: under any backend's bound-parameter cap


class Ledger:
    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    # -- checkpoint and blocks ---------------------------------------------------------------------
    def checkpoint(self, chain_id: int, contract: str) -> Checkpoint | None:
        with self.session() as s:
            return s.get(Checkpoint, (chain_id, contract.lower()))

    def record_block_range(
        self, chain_id: int, contract: str, jobs: Sequence[NewJob], blocks: dict[int, str],
        end_block: int,
    ) -> int:
        """Record the jobs of a block range, the hashes of its blocks, and move the checkpoint to
        `end_block`, atomically. Returns how many jobs were new.

        A job id already recorded from the same transaction is left as it is (read twice). One
        recorded from a transaction that a reorg removed is replaced by the new request."""
        contract = contract.lower()
        new = 0
        now = time.time()
        with self.session() as s:
            for job in jobs:
                existing = s.get(Job, (chain_id, contract, job.job_id))
                if existing is not None:
                    if existing.state != JobState.REORGED:
                        continue  # read twice: recorded once
                    if existing.tx_hash == job.tx_hash:  # the same request, re-included
                        existing.state = existing.pre_reorg_state or JobState.REQUESTED
                        existing.block_number, existing.block_hash = (job.block_number,
                                                                      job.block_hash)
                        existing.deadline = job.deadline
                        existing.request_hash = job.request_hash
                        existing.updated_at = now
                        _add_event(s, chain_id, contract, job.job_id, EventKind.RE_INCLUDED,
                                   f"block {job.block_number}")
                        continue
                    s.delete(existing)  # the id now belongs to another request
                    s.flush()
                s.add(Job(
                    chain_id=chain_id, contract=contract, job_id=job.job_id,
                    requester=job.requester, consumer=job.consumer, spec=job.spec,
                    fee_wei=str(job.fee_wei), deadline=job.deadline,
                    block_number=job.block_number, block_hash=job.block_hash,
                    tx_hash=job.tx_hash, log_index=job.log_index,
                    state=JobState.REJECTED if job.reason else JobState.REQUESTED,
                    reason=job.reason, attempts=0, submit_attempts=0,
                    callback_gas_limit=job.callback_gas_limit, request_hash=job.request_hash,
                    replicas=job.replicas, lease_s=job.lease_s, restricted=job.restricted,
                    claim_attempts=0,
                    errors=0, not_before=0.0, created_at=now, updated_at=now,
                ))
                s.flush()
                _add_event(s, chain_id, contract, job.job_id, EventKind.REQUESTED,
                           f"block {job.block_number} tx {job.tx_hash}")
                if job.reason:
                    _add_event(s, chain_id, contract, job.job_id, EventKind.REJECTED, job.reason)
                new += 1
            for number, block_hash in blocks.items():
                s.merge(SeenBlock(chain_id=chain_id, contract=contract, block_number=number,
                                  block_hash=block_hash))
            _advance_checkpoint(s, chain_id, contract, blocks, end_block)
        return new

    def record_block_range_bulk(
        self, chain_id: int, contract: str, jobs: Sequence[NewJob], blocks: dict[int, str],
        end_block: int,
    ) -> int:
        """`record_block_range`, with the same result, in a few statements per range instead of
        several per job: when no job id of the range is recorded yet (catching up), the jobs, their
        timeline lines, the block hashes and the checkpoint go in as bulk inserts in one
        transaction. A range holding an id already recorded (read twice, re-included after a
        reorg), or one id twice, or one another writer raced, is left to `record_block_range`."""
        from sqlalchemy.exc import IntegrityError  # here, not at the top: this method is an addition

        contract = contract.lower()
        ids = [job.job_id for job in jobs]
        try:
            with self.session() as s:
                bulk = len(set(ids)) == len(ids) and not any(
                    s.scalars(select(Job.job_id).where(
                        Job.chain_id == chain_id, Job.contract == contract,
                        Job.job_id.in_(ids[i:i + _IN_BATCH])).limit(1)).first() is not None
                    for i in range(0, len(ids), _IN_BATCH))
                if bulk:
                    _insert_block_range(s, chain_id, contract, jobs, blocks, end_block)
        except IntegrityError:  # another writer recorded one of the ids first; nothing was written
            bulk = False
        if not bulk:
            return self.record_block_range(chain_id, contract, jobs, blocks, end_block)
        return len(jobs)

    def recent_blocks(self, chain_id: int, contract: str) -> list[SeenBlock]:
        """Stored block hashes, newest first."""
        with self.session() as s:
            query = (select(SeenBlock)
                     .where(SeenBlock.chain_id == chain_id, SeenBlock.contract == contract.lower())
                     .order_by(SeenBlock.block_number.desc()))
            return list(s.scalars(query))

    def rewind(self, chain_id: int, contract: str, ancestor: int, ancestor_hash: str
               ) -> list[Job]:
        """After a reorg: forget blocks above `ancestor`, move the checkpoint there, and mark the
        jobs requested above it `reorged`: a reorged job is not worked on and its result is not
        sent. The listener re-reads the blocks; a request still on the chain comes back in the state
        it had. Returns the jobs marked."""
        contract = contract.lower()
        with self.session() as s:
            s.execute(delete(SeenBlock).where(
                SeenBlock.chain_id == chain_id, SeenBlock.contract == contract,
                SeenBlock.block_number > ancestor))
            checkpoint = s.get(Checkpoint, (chain_id, contract))
            if checkpoint is not None:
                checkpoint.block_number = ancestor
                checkpoint.block_hash = ancestor_hash
            jobs = list(s.scalars(select(Job).where(
                Job.chain_id == chain_id, Job.contract == contract, Job.block_number > ancestor)))
            for job in jobs:
                if job.state != JobState.REORGED:
                    job.pre_reorg_state = job.state
                job.state = JobState.REORGED
                job.updated_at = time.time()
                _add_event(s, chain_id, contract, job.job_id, EventKind.REORGED,
                           f"its block {job.block_number} left the canonical chain")
            return jobs

    # -- jobs -----------------------------------------------------------------------------------------
    def jobs_in(self, chain_id: int, contract: str, *states: JobState, limit: int = 100,
                fair: bool = False, after_job_id: int = 0) -> list[Job]:
        """Jobs in `states` that are due (`not_before` passed), oldest first.

        `fair`: interleaved across requesters (each requester's oldest job, then each one's
        second, …), so one requester's backlog cannot fill the window and starve the others.
        `after_job_id`: start after that id (a cursor for steps that page through all jobs)."""
        where = [Job.chain_id == chain_id, Job.contract == contract.lower(),
                 Job.state.in_([str(x) for x in states]), Job.not_before <= time.time(),
                 Job.job_id > after_job_id]
        with self.session() as s:
            if not fair:
                return list(s.scalars(select(Job).where(*where).order_by(Job.job_id).limit(limit)))
            rank = func.row_number().over(partition_by=Job.requester, order_by=Job.job_id)
            ranked = select(Job.job_id.label("id"), rank.label("rank")).where(*where).subquery()
            query = (select(Job).join(ranked, Job.job_id == ranked.c.id)
                     .where(Job.chain_id == chain_id, Job.contract == contract.lower())
                     .order_by(ranked.c.rank, Job.job_id).limit(limit))
            return list(s.scalars(query))

    def jobs_with_tasks(self, chain_id: int, contract: str, state: JobState,
                        task_ids: set[str]) -> list[Job]:
        """The jobs in `state` whose current task is one of `task_ids`, oldest first."""
        if not task_ids:
            return []
        with self.session() as s:
            return list(s.scalars(select(Job).where(
                Job.chain_id == chain_id, Job.contract == contract.lower(),
                Job.state == str(state), Job.task_id.in_(sorted(task_ids))).order_by(Job.job_id)))

    def defer(self, job: Job, seconds: float) -> None:
        """Leave the job out of every step's window for `seconds` (it is waiting for something)."""
        self._update(job, None, "", not_before=time.time() + seconds)

    def note_error(self, job: Job, step: str, error: str, max_errors: int) -> bool:
        """Record an unexpected error while `step` handled the job, and back it off (1 s, 2 s,
        4 s, … capped at 5 min). Returns True when the job has now had `max_errors` and is to be
        given up on by the caller."""
        errors = job.errors + 1
        self._update(job, EventKind.ERROR, f"{step}: {error}"[:500], errors=errors,
                     not_before=time.time() + min(2.0 ** (errors - 1), 300.0))
        return errors >= max_errors

    def count_by_state(self, chain_id: int, contract: str) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(Job.state, func.count()).where(
                Job.chain_id == chain_id, Job.contract == contract.lower()).group_by(Job.state))
            return {state: int(count) for state, count in rows}

    def get(self, chain_id: int, contract: str, job_id: int) -> Job | None:
        with self.session() as s:
            return s.get(Job, (chain_id, contract.lower(), job_id))

    # -- transitions: each writes its columns and its timeline event in one transaction ----------
    def note_waiting(self, job: Job, reason: str) -> None:
        """No live node can serve the job yet (it stays `requested`)."""
        self._update(job, EventKind.WAITING, reason)

    def mark_claiming(self, job: Job, tx_id: int) -> None:
        """claimJob is recorded with the transaction manager as `tx_id`: `claiming`."""
        self._update(job, EventKind.CLAIMING, f"claimJob (tx #{tx_id})", state=JobState.CLAIMING,
                     claim_tx_id=tx_id)

    def mark_claimed(self, job: Job, lease_end: int, detail: str) -> None:
        """We hold the job until `lease_end` (chain time): `claimed` to be run, or back to
        `rejected` (to be failed) when it was rejected before it was claimed."""
        state = JobState.REJECTED if job.reason else JobState.CLAIMED
        self._update(job, EventKind.CLAIMED, detail, state=state, lease_end=lease_end,
                     not_before=0.0)

    def mark_unclaimed(self, job: Job, kind: EventKind, detail: str, retry_in_s: float,
                       tried: bool) -> None:
        """We do not hold the job (another operator does, or our claim lost a race): out of every
        step's window for `retry_in_s`, then looked at again as before the claim. `tried`: a
        claim transaction was used up (the next one gets a new idempotency key)."""
        state = JobState.REJECTED if job.reason else JobState.REQUESTED
        self._update(job, kind, detail, state=state, claim_tx_id=None,
                     claim_attempts=job.claim_attempts + (1 if tried else 0),
                     not_before=time.time() + retry_in_s)

    def mark_started(self, job: Job, node: str, at: float) -> None:
        """A node started the job's current attempt at `at`."""
        self._update(job, EventKind.RUNNING, f"on {node}", node=node, started_at=at)

    def mark_executed(self, job: Job, node: str, result_cid: str | None, exit_code: int | None,
                      reason: str | None, detail: str, result: str = "") -> None:
        """The job ran and its result is published: `executed`, to be fulfilled (`result`: the
        small result, hex)."""
        self._update(job, EventKind.PUBLISHED, detail, state=JobState.EXECUTED, node=node,
                     result_cid=result_cid, exit_code=exit_code, reason=reason, result=result)

    def mark_run_failed(self, job: Job, node: str, reason: str | None) -> None:
        """The job could not run on `node` (its outcome says why): `rejected`, to be failed."""
        self._update(job, EventKind.REJECTED, f"on {node}: {reason}", state=JobState.REJECTED,
                     node=node, reason=reason)

    def mark_rejected(self, job: Job, reason: str) -> None:
        """The job cannot be run: `rejected`, to be failed on-chain with `reason` (at once)."""
        self._update(job, EventKind.REJECTED, reason, state=JobState.REJECTED,
                     reason=reason[:1000], not_before=0.0)

    def mark_submitting(self, job: Job, tx_id: int, function: str) -> None:
        """`function` (fulfillJob, failJob) is recorded with the transaction manager as `tx_id`."""
        self._update(job, EventKind.SUBMITTING, f"{function} (tx #{tx_id})",
                     state=JobState.SUBMITTING, submit_tx_id=tx_id)

    def mark_settled(self, job: Job, tx_hash: str | None, block: int | None, fulfilled: bool
                     ) -> None:
        """Our fulfillJob (`fulfilled`) or failJob is confirmed: `completed` or `failed`."""
        self._update(job, EventKind.FULFILLED if fulfilled else EventKind.FAILED_ON_CHAIN,
                     f"tx {tx_hash} in block {block}",
                     state=JobState.COMPLETED if fulfilled else JobState.FAILED, submit_tx=tx_hash)

    def mark_submit_retry(self, job: Job, detail: str, submit_attempts: int, failing: bool
                          ) -> None:
        """The settling transaction failed: back to `rejected` (`failing`) or `executed`, to be
        sent again (`submit_attempts` so far)."""
        self._update(job, EventKind.SUBMIT_ERROR, detail, submit_attempts=submit_attempts,
                     state=JobState.REJECTED if failing else JobState.EXECUTED)

    def mark_undeliverable(self, job: Job, reason: str) -> None:
        """The result could not be submitted: the job is failed instead (`rejected`, with
        `reason`), its submit attempts counted afresh."""
        self._update(job, EventKind.SUBMIT_ERROR, reason, state=JobState.REJECTED,
                     reason=reason[:1000], submit_attempts=0)

    # -- replicated jobs: commit → reveal → finalize (bridge.replication) --------------------------
    def keep_salt(self, job: Job, salt: str) -> None:
        """Store the salt of our commitment before the commitment is recorded for sending."""
        self._update(job, None, "", salt=salt)

    def mark_committing(self, job: Job, tx_id: int, salt: str) -> None:
        """commitResult is recorded as `tx_id`; `salt` (hex) opens it later: `committing`."""
        self._update(job, EventKind.COMMITTING, f"commitResult (tx #{tx_id})",
                     state=JobState.COMMITTING, submit_tx_id=tx_id, salt=salt)

    def mark_committed(self, job: Job, detail: str) -> None:
        """Our commitment is on-chain: `committed`, waiting for the reveal phase."""
        self._update(job, EventKind.COMMITTED, detail, state=JobState.COMMITTED, not_before=0.0)

    def mark_revealing(self, job: Job, tx_id: int) -> None:
        self._update(job, EventKind.REVEALING, f"revealResult (tx #{tx_id})",
                     state=JobState.REVEALING, submit_tx_id=tx_id)

    def mark_revealed(self, job: Job, detail: str) -> None:
        """Our answer is on-chain: `revealed`, waiting to finalize."""
        self._update(job, EventKind.REVEALED, detail, state=JobState.REVEALED, not_before=0.0)

    def mark_finalizing(self, job: Job, tx_id: int) -> None:
        self._update(job, EventKind.FINALIZING, f"finalize (tx #{tx_id})",
                     state=JobState.FINALIZING, submit_tx_id=tx_id)

    def mark_replica_retry(self, job: Job, state: JobState, detail: str, submit_attempts: int,
                           retry_in_s: float) -> None:
        """A replication transaction did not go through: back to `state`, sent again later."""
        self._update(job, EventKind.SUBMIT_ERROR, detail, state=state,
                     submit_attempts=submit_attempts, not_before=time.time() + retry_in_s)

    def mark_agreement(self, job: Job, agreed: bool, completed: bool, detail: str) -> None:
        """The replicated job is settled on-chain: `completed` or `failed`, with whether the
        answer we revealed is the one that won (`agreed`)."""
        self._update(job, EventKind.AGREED if agreed else EventKind.OUTVOTED, detail,
                     state=JobState.COMPLETED if completed else JobState.FAILED)

    def mark_abandoned(self, job: Job, reason: str) -> None:
        """No transaction can settle the job: `abandoned`."""
        self._update(job, EventKind.ABANDONED, reason, state=JobState.ABANDONED)

    def mark_closed(self, job: Job, detail: str, state: JobState = JobState.CLOSED) -> None:
        """The chain ended the job without us: `closed`, or `completed`/`failed` when the chain
        says it was."""
        self._update(job, EventKind.CLOSED, detail, state=state)

    def mark_submitting_many(self, jobs: Sequence[Job], tx_id: int, function: str) -> None:
        """`mark_submitting` for every job one transaction settles (`fulfillBatch`), in one
        ledger transaction."""
        self._update_many([(job, EventKind.SUBMITTING, f"{function} (tx #{tx_id})",
                            {"state": JobState.SUBMITTING, "submit_tx_id": tx_id})
                           for job in jobs])

    def mark_settled_many(self, settled: Sequence[tuple[Job, str | None, int | None, bool]]
                          ) -> None:
        """`mark_settled` for many jobs, each `(job, tx_hash, block, fulfilled)`, in one ledger
        transaction."""
        self._update_many([
            (job, EventKind.FULFILLED if fulfilled else EventKind.FAILED_ON_CHAIN,
             f"tx {tx_hash} in block {block}",
             {"state": JobState.COMPLETED if fulfilled else JobState.FAILED, "submit_tx": tx_hash})
            for job, tx_hash, block, fulfilled in settled])

    def _update_many(self, updates: Sequence[tuple[Job, EventKind, str, dict[str, object]]]
                     ) -> None:
        """`_update` for many jobs of one chain and contract, in one transaction: one `UPDATE … IN
        (…)` per set of values (per 500 jobs) and one insert of the timeline lines (the ORM's
        unit of work, row by row, costs more than the writes)."""
        from sqlalchemy import insert, update  # here: this method is an addition

        if not updates:
            return
        now = time.time()
        first = updates[0][0]
        groups: dict[tuple[tuple[str, object], ...], list[int]] = {}
        for job, _, _, fields in updates:
            assert (job.chain_id, job.contract) == (first.chain_id, first.contract)
            groups.setdefault(tuple(sorted(fields.items())), []).append(job.job_id)
        with self.session() as s:
            for values, ids in groups.items():
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    result = s.execute(
                        update(Job).where(Job.chain_id == first.chain_id,
                                          Job.contract == first.contract,
                                          Job.job_id.in_(chunk))
                        .values(**dict(values), updated_at=now)
                        .execution_options(synchronize_session=False))
                    changed = getattr(result, "rowcount", len(chunk))
                    assert changed == len(chunk), f"{len(chunk) - changed} jobs vanished"
            s.execute(insert(JobEvent), [
                {"chain_id": job.chain_id, "contract": job.contract, "job_id": job.job_id,
                 "at": now, "kind": kind, "detail": detail}
                for job, kind, detail, _ in updates])
        for job, _, _, fields in updates:
            for name, value in fields.items():
                setattr(job, name, value)
            job.updated_at = now

    def _update(self, job: Job, event_kind: EventKind | None, detail: str, **fields: object
                ) -> None:
        """Set fields of a job (and on `job`) and append a timeline event, in one transaction."""
        with self.session() as s:
            stored = s.get(Job, (job.chain_id, job.contract, job.job_id))
            assert stored is not None, f"job {job.key} vanished from the ledger"
            for name, value in fields.items():
                setattr(stored, name, value)
                setattr(job, name, value)
            stored.updated_at = time.time()
            if event_kind:
                _add_event(s, job.chain_id, job.contract, job.job_id, event_kind, detail)

    def add_event(self, job: Job, kind: EventKind, detail: str = "") -> None:
        """A timeline event that changes nothing else."""
        with self.session() as s:
            _add_event(s, job.chain_id, job.contract, job.job_id, kind, detail)

    def timeline(self, chain_id: int, contract: str, job_id: int) -> list[JobEvent]:
        with self.session() as s:
            query = (select(JobEvent)
                     .where(JobEvent.chain_id == chain_id, JobEvent.contract == contract.lower(),
                            JobEvent.job_id == job_id)
                     .order_by(JobEvent.id))
            return list(s.scalars(query))

    def all_jobs(self, chain_id: int, contract: str) -> list[Job]:
        with self.session() as s:
            query = (select(Job).where(Job.chain_id == chain_id, Job.contract == contract.lower())
                     .order_by(Job.job_id))
            return list(s.scalars(query))

    # -- attempts -------------------------------------------------------------------------------------
    def add_attempt(self, job: Job, attempt: int, task_id: str) -> None:
        with self.session() as s:
            _add_attempt(s, job, attempt, task_id)

    def mark_dispatched(self, job: Job, attempt: int, task_id: str, epoch: str,
                        routed_node: str | None = None, detail: str = "") -> None:
        """Record an attempt and the job's move to `dispatched`, in one transaction.

        Called after the task is sent: a crash in between leaves the job `requested`, and it is
        sent again under the same task id (a duplicate run at worst, never a lost job)."""
        now = time.time()
        with self.session() as s:
            _add_attempt(s, job, attempt, task_id)
            stored = s.get(Job, (job.chain_id, job.contract, job.job_id))
            assert stored is not None
            fields = {"state": JobState.DISPATCHED, "task_id": task_id, "attempts": attempt,
                      "broker_epoch": epoch, "dispatched_at": now, "updated_at": now,
                      "routed_node": routed_node, "started_at": None}
            for name, value in fields.items():
                setattr(stored, name, value)
                setattr(job, name, value)
            _add_event(s, job.chain_id, job.contract, job.job_id, EventKind.QUEUED,
                       f"attempt {attempt}, task {task_id}" + (f"; {detail}" if detail else ""))

    def mark_dispatched_many(self, sent: Sequence[tuple[Job, int, str, str | None, str]],
                             epoch: str) -> None:
        """`mark_dispatched` for a batch of sent tasks, each `(job, attempt, task_id,
        routed_node, detail)`, in one transaction: the same rows and timeline lines, written as
        one statement per table per 500 jobs (Core statements: the ORM's unit of work costs
        more than the writes themselves), not one commit per job."""
        from sqlalchemy import bindparam, insert, tuple_, update  # here: this method is an addition

        if not sent:
            return
        now, step = time.time(), 500  # step: values per `IN (…)`, under every backend's cap
        tables = Base.metadata.tables
        jobs, attempts, events = (tables[Job.__tablename__], tables[Attempt.__tablename__],
                                  tables[JobEvent.__tablename__])
        with self.session() as s:
            connection = s.connection()
            for i in range(0, len(sent), step):
                part = sent[i:i + step]
                keys = [(job.chain_id, job.contract, job.job_id) for job, *_ in part]
                found = {tuple(r) for r in s.execute(select(Job.chain_id, Job.contract, Job.job_id)
                                                     .where(tuple_(Job.chain_id, Job.contract,
                                                                   Job.job_id).in_(keys)))}
                missing = next((job for job, *_ in part
                                if (job.chain_id, job.contract, job.job_id) not in found), None)
                assert missing is None, f"job {missing.key} vanished from the ledger"
                known = set(s.scalars(select(Attempt.task_id).where(
                    Attempt.task_id.in_([task_id for _, _, task_id, *_ in part]))))
                new_attempts = {task_id: {
                    "chain_id": job.chain_id, "contract": job.contract, "job_id": job.job_id,
                    "attempt": attempt, "task_id": task_id, "queued_at": now}
                    for job, attempt, task_id, *_ in part if task_id not in known}
                if new_attempts:
                    connection.execute(insert(attempts), list(new_attempts.values()))
                connection.execute(
                    update(jobs).where(jobs.c.chain_id == bindparam("k_chain"),
                                       jobs.c.contract == bindparam("k_contract"),
                                       jobs.c.job_id == bindparam("k_job"))
                    .values(state=JobState.DISPATCHED, broker_epoch=epoch, dispatched_at=now,
                            updated_at=now, started_at=None, task_id=bindparam("v_task"),
                            attempts=bindparam("v_attempt"), routed_node=bindparam("v_node")),
                    [{"k_chain": job.chain_id, "k_contract": job.contract, "k_job": job.job_id,
                      "v_task": task_id, "v_attempt": attempt, "v_node": node}
                     for job, attempt, task_id, node, _ in part])
                connection.execute(insert(events), [{
                    "chain_id": job.chain_id, "contract": job.contract, "job_id": job.job_id,
                    "at": now, "kind": EventKind.QUEUED,
                    "detail": f"attempt {attempt}, task {task_id}" + (f"; {detail}" if detail else "")}
                    for job, attempt, task_id, _, detail in part])
        for job, attempt, task_id, node, _ in sent:  # as `mark_dispatched` updates its `job`
            job.state, job.task_id, job.attempts, job.broker_epoch = (
                JobState.DISPATCHED, task_id, attempt, epoch)
            job.dispatched_at, job.updated_at, job.routed_node, job.started_at = now, now, node, None

    def finish_attempt(self, task_id: str, *, node: str, duration_s: float,
                       exit_code: int | None, result_cid: str | None, error: str | None) -> None:
        """The attempt's outcome came back (`error`: why it failed, if it did)."""
        self._finish_attempt(task_id, node=node, duration_s=duration_s, exit_code=exit_code,
                             result_cid=result_cid, error=error)

    def fail_attempt(self, task_id: str, error: str) -> None:
        """The attempt ended without an outcome that counts (a crash, an untrusted result)."""
        self._finish_attempt(task_id, error=error)

    def _finish_attempt(self, task_id: str, **fields: object) -> None:
        with self.session() as s:
            attempt = s.scalars(select(Attempt).where(Attempt.task_id == task_id)).first()
            if attempt is None:
                return
            for name, value in fields.items():
                setattr(attempt, name, value)
            attempt.finished_at = time.time()

    def attempts(self, chain_id: int, contract: str, job_id: int) -> list[Attempt]:
        with self.session() as s:
            return list(s.scalars(select(Attempt).where(
                Attempt.chain_id == chain_id, Attempt.contract == contract.lower(),
                Attempt.job_id == job_id).order_by(Attempt.id)))

    def jobs_page(self, chain_id: int, contract: str, *, limit: int, before_job_id: int | None = None,
                  states: Sequence[str] | None = None, after_job_id: int | None = None,
                  requester: str | None = None, min_block: int | None = None, offset: int = 0
                  ) -> tuple[list[Job], int]:
        """One page of jobs for the read side (`/jobs`, `cod job list`), and how many match.

        Newest first below `before_job_id` (a cursor: the last id of the previous page), or
        oldest first above `after_job_id`. One indexed query whatever the size of the table."""
        where = [Job.chain_id == chain_id, Job.contract == contract.lower()]
        if states is not None:
            where.append(Job.state.in_([str(x) for x in states]))
        if requester is not None:
            where.append(func.lower(Job.requester) == requester.lower())
        if min_block is not None:
            where.append(Job.block_number >= min_block)
        bounded = list(where)
        if before_job_id is not None:
            bounded.append(Job.job_id < before_job_id)
        if after_job_id is not None:
            bounded.append(Job.job_id > after_job_id)
        order = Job.job_id.asc() if after_job_id is not None else Job.job_id.desc()
        with self.session() as s:
            rows = list(s.scalars(select(Job).where(*bounded).order_by(order)
                                  .offset(offset).limit(limit)))
            total = int(s.scalar(select(func.count()).select_from(Job).where(*where)) or 0)
        return rows, total


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _add_attempt(s: Session, job: Job, attempt: int, task_id: str) -> None:
    if s.scalars(select(Attempt).where(Attempt.task_id == task_id)).first() is None:
        s.add(Attempt(chain_id=job.chain_id, contract=job.contract, job_id=job.job_id,
                      attempt=attempt, task_id=task_id, queued_at=time.time()))


def _add_event(s: Session, chain_id: int, contract: str, job_id: int, kind: EventKind,
               detail: str) -> None:
    s.add(JobEvent(chain_id=chain_id, contract=contract, job_id=job_id, at=time.time(),
                   kind=kind, detail=detail))


def _insert_block_range(s: Session, chain_id: int, contract: str, jobs: Sequence[NewJob],
                        blocks: dict[int, str], end_block: int) -> None:
    """`Ledger.record_block_range_bulk`'s writes, once every job is known to be new: what
    `record_block_range` writes for new jobs, as one multi-row insert per table (Core inserts:
    the ORM's bulk path costs as much again per row)."""
    from sqlalchemy import insert

    now = time.time()
    connection = s.connection()
    if jobs:
        connection.execute(insert(Base.metadata.tables[Job.__tablename__]), [{
            "chain_id": chain_id, "contract": contract, "job_id": job.job_id,
            "requester": job.requester, "consumer": job.consumer, "spec": job.spec,
            "fee_wei": str(job.fee_wei), "deadline": job.deadline,
            "block_number": job.block_number, "block_hash": job.block_hash,
            "tx_hash": job.tx_hash, "log_index": job.log_index,
            "state": JobState.REJECTED if job.reason else JobState.REQUESTED,
            "reason": job.reason, "attempts": 0, "submit_attempts": 0,
            "callback_gas_limit": job.callback_gas_limit, "request_hash": job.request_hash,
            "replicas": job.replicas, "lease_s": job.lease_s, "restricted": job.restricted,
            "claim_attempts": 0, "errors": 0, "not_before": 0.0, "created_at": now,
            "updated_at": now,
        } for job in jobs])
        lines = [{"chain_id": chain_id, "contract": contract, "job_id": job.job_id, "at": now,
                  "kind": EventKind.REQUESTED, "detail": f"block {job.block_number} tx {job.tx_hash}"}
                 for job in jobs]
        lines += [{"chain_id": chain_id, "contract": contract, "job_id": job.job_id, "at": now,
                   "kind": EventKind.REJECTED, "detail": job.reason} for job in jobs if job.reason]
        connection.execute(insert(Base.metadata.tables[JobEvent.__tablename__]), lines)
    numbers = sorted(blocks)
    for i in range(0, len(numbers), _IN_BATCH):  # replaced, as `merge` does
        s.execute(delete(SeenBlock).where(
            SeenBlock.chain_id == chain_id, SeenBlock.contract == contract,
            SeenBlock.block_number.in_(numbers[i:i + _IN_BATCH])))
    connection.execute(insert(Base.metadata.tables[SeenBlock.__tablename__]), [
        {"chain_id": chain_id, "contract": contract, "block_number": n, "block_hash": blocks[n]}
        for n in numbers])
    _advance_checkpoint(s, chain_id, contract, blocks, end_block)


def _advance_checkpoint(s: Session, chain_id: int, contract: str, blocks: dict[int, str],
                        end_block: int) -> None:
    """Forget block hashes older than `RECENT_BLOCKS_KEPT`; the checkpoint moves to `end_block`."""
    s.execute(delete(SeenBlock).where(
        SeenBlock.chain_id == chain_id, SeenBlock.contract == contract,
        SeenBlock.block_number < end_block - RECENT_BLOCKS_KEPT))
    checkpoint = s.get(Checkpoint, (chain_id, contract))
    if checkpoint is None:
        s.add(Checkpoint(chain_id=chain_id, contract=contract, block_number=end_block,
                         block_hash=blocks[end_block]))
    else:
        checkpoint.block_number = end_block
        checkpoint.block_hash = blocks[end_block]


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the CLI) do not block the bridge
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, fast
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
