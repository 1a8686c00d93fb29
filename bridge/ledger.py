"""The bridge's durable state (SQLAlchemy 2; SQLite by default, any SQLAlchemy URL works).

It holds the listener checkpoint (block number and hash), every job seen with its status, and a
timeline of events per job. Jobs are keyed by `(chain_id, contract, job_id)`, so an event read twice
is recorded once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class JobState(StrEnum):
    """Where a job is in the bridge (the chain's own status is separate)."""

    REQUESTED = "requested"  # seen on-chain, not yet dispatched
    DISPATCHED = "dispatched"  # handed to Celery
    EXECUTED = "executed"  # outcome known, result to submit
    REJECTED = "rejected"  # to be failed on-chain (bad spec, image missing, …)
    COMPLETED = "completed"  # fulfillJob confirmed
    FAILED = "failed"  # failJob confirmed
    CLOSED = "closed"  # the chain ended it without us (cancelled, or fulfilled by another oracle)


TERMINAL = {JobState.COMPLETED, JobState.FAILED, JobState.CLOSED}


class Base(DeclarativeBase):
    pass


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
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
    tx_hash: Mapped[str] = mapped_column(String(66))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[str | None] = mapped_column(String(200))
    node: Mapped[str | None] = mapped_column(String(200))
    result_cid: Mapped[str | None] = mapped_column(String(200))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    submit_tx: Mapped[str | None] = mapped_column(String(66))
    submit_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column()
    updated_at: Mapped[float] = mapped_column()

    @property
    def key(self) -> str:
        return job_key(self.chain_id, self.contract, self.job_id)


class JobEvent(Base):
    """One line of a job's timeline (`cod job describe`)."""

    __tablename__ = "job_events"
    __table_args__ = (
        ForeignKeyConstraint(["chain_id", "contract", "job_id"],
                             ["jobs.chain_id", "jobs.contract", "jobs.job_id"]),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(BigInteger, index=True)
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
    tx_hash: str


class Ledger:
    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def checkpoint(self, chain_id: int, contract: str) -> Checkpoint | None:
        with self.session() as s:
            return s.get(Checkpoint, (chain_id, contract.lower()))

    def record_block_range(
        self, chain_id: int, contract: str, jobs: Sequence[NewJob], block_number: int,
        block_hash: str,
    ) -> int:
        """Record the jobs of a block range and move the checkpoint past it, atomically.

        Returns how many jobs were new (a job already recorded is left as it is)."""
        contract = contract.lower()
        new = 0
        now = time.time()
        with self.session() as s:
            for job in jobs:
                if s.get(Job, (chain_id, contract, job.job_id)) is not None:
                    continue
                s.add(Job(
                    chain_id=chain_id, contract=contract, job_id=job.job_id,
                    requester=job.requester, consumer=job.consumer, spec=job.spec,
                    fee_wei=str(job.fee_wei), deadline=job.deadline,
                    block_number=job.block_number, tx_hash=job.tx_hash,
                    state=JobState.REQUESTED, attempts=0, submit_attempts=0,
                    created_at=now, updated_at=now,
                ))
                s.flush()
                _add_event(s, chain_id, contract, job.job_id, "requested",
                           f"block {job.block_number} tx {job.tx_hash}")
                new += 1
            checkpoint = s.get(Checkpoint, (chain_id, contract))
            if checkpoint is None:
                s.add(Checkpoint(chain_id=chain_id, contract=contract,
                                 block_number=block_number, block_hash=block_hash))
            else:
                checkpoint.block_number = block_number
                checkpoint.block_hash = block_hash
        return new

    def jobs_in(self, chain_id: int, contract: str, *states: JobState, limit: int = 100
                ) -> list[Job]:
        with self.session() as s:
            query = (select(Job)
                     .where(Job.chain_id == chain_id, Job.contract == contract.lower(),
                            Job.state.in_([str(x) for x in states]))
                     .order_by(Job.job_id).limit(limit))
            return list(s.scalars(query))

    def get(self, chain_id: int, contract: str, job_id: int) -> Job | None:
        with self.session() as s:
            return s.get(Job, (chain_id, contract.lower(), job_id))

    def update(self, job: Job, event_kind: str | None = None, detail: str = "", **fields: object
               ) -> None:
        """Set fields of a job and append a timeline event, in one transaction."""
        with self.session() as s:
            stored = s.get(Job, (job.chain_id, job.contract, job.job_id))
            assert stored is not None, f"job {job.key} vanished from the ledger"
            for name, value in fields.items():
                setattr(stored, name, value)
                setattr(job, name, value)
            stored.updated_at = time.time()
            if event_kind:
                _add_event(s, job.chain_id, job.contract, job.job_id, event_kind, detail)

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


def _add_event(s: Session, chain_id: int, contract: str, job_id: int, kind: str, detail: str
               ) -> None:
    s.add(JobEvent(chain_id=chain_id, contract=contract, job_id=job_id, at=time.time(),
                   kind=kind, detail=detail))


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the CLI) do not block the bridge
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
