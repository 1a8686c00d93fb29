"""In-memory stand-ins for what the dispatcher, reconciler and submitter take (`bridge.ports`), and
a real ledger on a temporary SQLite file, for their focused unit tests."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from bridge.chain import ZERO_ADDRESS, JobStatus, OnChainJob, OperatorView, ReplicaSlot, ReplicaState
from bridge.ledger import Job, JobState, Ledger, NewJob, Transaction, TxStatus
from bridge.operators import OperatorStatus
from bridge.ports import Fulfilment
from bridge.terms import Terms
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
LEASE = 900
OPERATOR, OTHER_OPERATOR = "0x" + "9" * 40, "0x" + "8" * 40  # our key's address, another's
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
            deadline: int = DEADLINE, replicas: int = 1, restricted: bool = False) -> Job:
    ledger.record_block_range(CHAIN, CONTRACT, [NewJob(
        job_id=job_id, requester=REQUESTER, consumer=CONSUMER, spec=job_spec, fee_wei=fee,
        deadline=deadline, block_number=job_id, block_hash=f"0x{job_id:064x}",
        tx_hash=f"0x{job_id:064x}", log_index=0, request_hash=REQUEST_HASH,
        replicas=replicas, lease_s=LEASE, restricted=restricted)],
        {job_id: f"0x{job_id:064x}"}, job_id)
    return job(ledger, job_id)


def terms(*, fee: int = FEE, deadline: int = DEADLINE, requester: str = REQUESTER,
          replicas: int = 1, restricted: bool = False) -> Terms:
    """The terms `add_job` records (what the chain's digest is of)."""
    return Terms(requester=Web3.to_checksum_address(requester),
                 consumer=Web3.to_checksum_address(CONSUMER), fee=fee, deadline=deadline,
                 callback_gas_limit=0, replicas=replicas, lease=LEASE, restricted=restricted,
                 request_hash=bytes.fromhex(REQUEST_HASH[2:]))


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

    def sending(self) -> AbstractContextManager[FakeTasks]:
        return nullcontext(self)

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
    """JobManager v2 as the bridge sees it: job words (`OnChainJob`) and encoded calls (as
    readable strings: `claimJob(1,<terms digest>)`)."""

    address: str = CONTRACT
    timestamp: int = 1_700_000_000
    jobs: dict[int, OnChainJob] = field(default_factory=dict)
    reads: int = 0
    batch_reads: int = 0  # read_jobs calls (one round trip each)
    claimers: dict[int, set[str]] = field(default_factory=dict)  # restricted requests
    slots: dict[int, list[ReplicaSlot]] = field(default_factory=dict)  # replicated jobs
    lapsed: set[tuple[int, str]] = field(default_factory=set)  # (job id, operator) barred
    stake: int = 10**17  # our key's stake (the minimum: eligible)
    operators: int = 1  # registered operators (ours is index 1)

    def latest_timestamp(self) -> int:
        return self.timestamp

    def read_job(self, job_id: int) -> OnChainJob:
        self.reads += 1
        return self.jobs.get(job_id, OnChainJob(JobStatus.NONE))

    def read_jobs(self, job_ids: list[int]) -> dict[int, OnChainJob]:
        self.batch_reads += 1
        return {job_id: self.jobs.get(job_id, OnChainJob(JobStatus.NONE)) for job_id in job_ids}

    def request(self, job_id: int, *, status: JobStatus = JobStatus.REQUESTED,
                deadline: int = DEADLINE, requester: str = REQUESTER, fee: int = FEE,
                claimer: str = ZERO_ADDRESS, lease_end: int = 0, digest: bytes | None = None
                ) -> None:
        """The job on-chain: open with the digest of `add_job`'s terms unless told otherwise."""
        if digest is None:
            digest = terms(fee=fee, deadline=deadline, requester=requester).digest()
        self.jobs[job_id] = OnChainJob(status=status, lease_end=lease_end, claimer=claimer,
                                       digest=digest)

    def claimed(self, job_id: int, by: str = OPERATOR, lease_end: int | None = None,
                deadline: int = DEADLINE) -> None:
        """`by` holds the job until `lease_end` (default: a lease from now)."""
        self.request(job_id, status=JobStatus.CLAIMED, claimer=by, deadline=deadline,
                     lease_end=self.timestamp + LEASE if lease_end is None else lease_end)

    def may_claim(self, job_id: int, account: str) -> bool:
        return account in self.claimers.get(job_id, set())

    def claim_calldata(self, job_id: int, terms: Terms) -> str:
        return f"claimJob({job_id},{terms.digest().hex()})"

    def fulfill_calldata(self, job_id: int, terms: Terms, result_cid: str, exit_code: int,
                         result: bytes) -> str:
        return f"fulfillJob({job_id},{terms.digest().hex()},{result_cid},{exit_code},{result.hex()})"

    def fulfill_batch_calldata(self, items: list[Fulfilment]) -> str:
        return "fulfillBatch(" + ";".join(
            f"{job_id},{t.digest().hex()},{cid},{code},{result.hex()}"
            for job_id, t, cid, code, result in items) + ")"

    def fail_calldata(self, job_id: int, terms: Terms, reason: str) -> str:
        return f"failJob({job_id},{terms.digest().hex()},{reason})"

    def read_replicas(self, job_id: int, replicas: int) -> list[ReplicaSlot]:
        slots = self.slots.get(job_id, [])
        return slots + [ReplicaSlot(ZERO_ADDRESS, 0, ReplicaState.EMPTY)] * (replicas - len(slots))

    def slot(self, job_id: int, index: int, by: str, state: ReplicaState,
             lease_end: int | None = None, answer: bytes = bytes(20)) -> None:
        """Set replica slot `index` of `job_id` (the slots before it are empty unless set)."""
        slots = self.slots.setdefault(job_id, [])
        while len(slots) <= index:
            slots.append(ReplicaSlot(ZERO_ADDRESS, 0, ReplicaState.EMPTY))
        slots[index] = ReplicaSlot(by, self.timestamp + LEASE if lease_end is None else lease_end,
                                   state, answer=answer)

    def has_lapsed(self, job_id: int, account: str) -> bool:
        return (job_id, account) in self.lapsed

    def commit_calldata(self, job_id: int, terms: Terms, commitment: bytes) -> str:
        return f"commitResult({job_id},{terms.digest().hex()},{commitment.hex()})"

    def reveal_calldata(self, job_id: int, terms: Terms, result_cid: str, exit_code: int,
                        result: bytes, salt: bytes) -> str:
        return (f"revealResult({job_id},{terms.digest().hex()},{result_cid},{exit_code},"
                f"{result.hex()},{salt.hex()})")

    def finalize_calldata(self, job_id: int, terms: Terms) -> str:
        return f"finalize({job_id},{terms.digest().hex()})"

    def operator_standing(self, account: str) -> OperatorStatus:
        return OperatorStatus(account, OperatorView(1, 0, self.stake, 0), min_stake=10**17,
                              unbonding_delay=7200, withdrawable=0, max_penalty=10**16,
                              operators=self.operators)


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
                         sender=OPERATOR, to=to, data=data, value=str(value),
                         status=TxStatus.UNSTARTED, bumps=0, all_hashes="",
                         max_cost=None if max_cost is None else str(max_cost), not_before=0.0,
                         tries=0, created_at=now, updated_at=now)
        self.txs.append(tx)
        return tx

    def get(self, tx_id: int) -> Transaction | None:
        return next((tx for tx in self.txs if tx.id == tx_id), None)

    def get_many(self, tx_ids: list[int]) -> dict[int, Transaction]:
        return {tx.id: tx for tx in self.txs if tx.id in set(tx_ids)}

    def mine(self, tx: Transaction, succeeded: bool, block: int = 100) -> None:
        tx.status = TxStatus.CONFIRMED
        tx.succeeded = succeeded
        tx.tx_hash = f"0x{tx.id:064x}"
        tx.mined_block = block
        if not succeeded:
            tx.error = "execution reverted"


def states(ledger: Ledger) -> dict[int, JobState]:
    return {j.job_id: JobState(j.state) for j in ledger.all_jobs(CHAIN, CONTRACT)}
