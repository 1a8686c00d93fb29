"""In-memory stand-ins for what the dispatcher, reconciler and submitter take (`bridge.ports`), and
a real ledger on a temporary SQLite file, for their focused unit tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account

from bridge.chain import JobStatus, OnChainJob
from bridge.ledger import Job, JobState, Ledger, NewJob, Transaction, TxStatus
from protocol.attestation import SIGNATURE_FIELD, sign_outcome
from protocol.capacity import Capacity
from protocol.nodes import NodeInfo
from protocol.outcome import JobOutcome
from protocol.queues import GiB

CHAIN, CONTRACT = 31337, "0x5fbdb2315678afecb367f032d93f642f64180aa3"
REQUESTER, CONSUMER = "0x" + "1" * 40, "0x" + "0" * 40
FEE = 10**15
DEADLINE = 2_000_000_000
REQUEST_HASH = "0x" + "ab" * 32
CID = "bafybeifnpx3io52zdt45tzxhynk7qf55hhbzfxtux24xfchmlqipybr6ne"
OTHER_CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def spec(**fields: Any) -> str:
    return json.dumps({"image": "x", **fields})


def ipfs_spec(*cids: str, **fields: Any) -> str:
    return spec(inputs=[{"source": f"ipfs://{c}", "target": f"/in/{i}"} for i, c in enumerate(cids)],
                **fields)


def new_ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def add_job(ledger: Ledger, job_id: int, job_spec: str = spec(), *, fee: int = FEE,
            deadline: int = DEADLINE) -> Job:
    ledger.record_block_range(CHAIN, CONTRACT, [NewJob(
        job_id=job_id, requester=REQUESTER, consumer=CONSUMER, spec=job_spec, fee_wei=fee,
        deadline=deadline, block_number=job_id, block_hash=f"0x{job_id:064x}",
        tx_hash=f"0x{job_id:064x}", log_index=0, request_hash=REQUEST_HASH)],
        {job_id: f"0x{job_id:064x}"}, job_id)
    return job(ledger, job_id)


def job(ledger: Ledger, job_id: int) -> Job:
    found = ledger.get(CHAIN, CONTRACT, job_id)
    assert found is not None
    return found


def set_fields(ledger: Ledger, job_id: int, **fields: object) -> None:
    """Move a job's clock (or state) by hand, as time passing would."""
    with ledger.session() as s:
        stored = s.get(Job, (CHAIN, CONTRACT, job_id))
        assert stored is not None
        for name, value in fields.items():
            setattr(stored, name, value)


def events(ledger: Ledger, job_id: int) -> list[str]:
    return [e.kind for e in ledger.timeline(CHAIN, CONTRACT, job_id)]


def node(node_id: str, *queues: str, cpus: float = 4, memory: int = 8 * GiB) -> NodeInfo:
    return NodeInfo(node_id=node_id, queues=list(queues or ["cod.cpu"]),
                    capacity=Capacity(cpus=cpus, memory=memory))


# -- the task queue --------------------------------------------------------------------------------


@dataclass
class FakeResult:
    state: str = "PENDING"
    result: Any = None
    info: Any = None
    forgotten: bool = False

    def forget(self) -> None:
        self.forgotten = True


@dataclass(frozen=True)
class Sent:
    task_id: str
    queue: str
    job_key: str
    spec: str


@dataclass
class FakeTasks:
    sent: list[Sent] = field(default_factory=list)
    results: dict[str, FakeResult] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)

    def send(self, task_id: str, queue: str, job_key: str, spec: str) -> None:
        self.sent.append(Sent(task_id, queue, job_key, spec))

    def result(self, task_id: str) -> FakeResult:
        return self.results.setdefault(task_id, FakeResult())

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)

    def finish(self, task_id: str, state: str, result: Any = None, info: Any = None) -> FakeResult:
        self.results[task_id] = FakeResult(state, result, info)
        return self.results[task_id]


@dataclass
class FakeBoard:
    nodes: list[NodeInfo] = field(default_factory=list)
    held: dict[str, dict[str, int]] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)

    def live(self) -> list[NodeInfo]:
        return list(self.nodes)

    def holdings(self, node_ids: list[str]) -> dict[str, dict[str, int]]:
        return {n: self.held[n] for n in node_ids if n in self.held}

    def mark_superseded(self, task_id: str) -> None:
        self.superseded.append(task_id)


@dataclass
class FakeEpoch:
    value: str = "epoch-1"

    def current(self) -> str:
        return self.value


class NodeKey:
    """A compute node's signing key: signs outcomes as a registered node does."""

    def __init__(self) -> None:
        account = Account.create()
        self.key = str(account.key.to_0x_hex())
        self.address = str(account.address)

    def outcome(self, task_id: str, job: Job, **fields: Any) -> dict[str, Any]:
        data = JobOutcome(**{"job_key": job.key, "status": "completed", "node": "node-a",
                             "result_cid": CID, "exit_code": 0, **fields}).to_dict()
        data[SIGNATURE_FIELD] = sign_outcome(self.key, task_id, data, spec=job.spec)
        return data


# -- the chain and the transaction manager ---------------------------------------------------------


@dataclass
class FakeChain:
    address: str = CONTRACT
    timestamp: int = 1_700_000_000
    jobs: dict[int, OnChainJob] = field(default_factory=dict)
    reads: int = 0

    def latest_timestamp(self) -> int:
        return self.timestamp

    def read_job(self, job_id: int) -> OnChainJob:
        self.reads += 1
        return self.jobs.get(job_id, OnChainJob(REQUESTER, CONSUMER, 0, 0, 0, JobStatus.NONE, 0,
                                                ""))

    def request(self, job_id: int, *, status: JobStatus = JobStatus.REQUESTED,
                deadline: int = DEADLINE, requester: str = REQUESTER, fee: int = FEE) -> None:
        self.jobs[job_id] = OnChainJob(requester=requester, consumer=CONSUMER, fee=fee,
                                       deadline=deadline, callback_gas_limit=0, status=status,
                                       exit_code=0, result_cid="", request_hash=REQUEST_HASH)

    def fulfill_calldata(self, job_id: int, binding: bytes, result_cid: str,
                         exit_code: int) -> str:
        return f"fulfillJob({job_id},{binding.hex()},{result_cid},{exit_code})"

    def fail_calldata(self, job_id: int, binding: bytes, reason: str) -> str:
        return f"failJob({job_id},{binding.hex()},{reason})"


@dataclass
class FakeTxm:
    txs: list[Transaction] = field(default_factory=list)

    def enqueue(self, idempotency_key: str, to: str, data: str, value: int = 0,
                max_cost: int | None = None) -> Transaction:
        for tx in self.txs:
            if tx.idempotency_key == idempotency_key:
                return tx
        now = time.time()
        tx = Transaction(id=len(self.txs) + 1, idempotency_key=idempotency_key, chain_id=CHAIN,
                         sender="0x" + "9" * 40, to=to, data=data, value=str(value),
                         status=TxStatus.UNSTARTED, bumps=0, all_hashes="",
                         max_cost=None if max_cost is None else str(max_cost), not_before=0.0,
                         tries=0, created_at=now, updated_at=now)
        self.txs.append(tx)
        return tx

    def get(self, tx_id: int) -> Transaction | None:
        return next((tx for tx in self.txs if tx.id == tx_id), None)

    def mine(self, tx: Transaction, succeeded: bool, block: int = 100) -> None:
        tx.status = TxStatus.CONFIRMED
        tx.succeeded = succeeded
        tx.tx_hash = f"0x{tx.id:064x}"
        tx.mined_block = block
        if not succeeded:
            tx.error = "execution reverted"


def states(ledger: Ledger) -> dict[int, JobState]:
    return {j.job_id: JobState(j.state) for j in ledger.all_jobs(CHAIN, CONTRACT)}
