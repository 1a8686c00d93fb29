"""The listener's catch-up path without a chain: one raw `eth_getLogs` per range through a fake
JSON-RPC provider, hostile logs skipped without stopping the range, and the bulk ledger write
(`Ledger.record_block_range_bulk`) leaving exactly what the per-job `record_block_range` leaves
(on SQLite, and on PostgreSQL through the `ledger_url` fixture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.providers.base import JSONBaseProvider

from bridge import metrics
from bridge.chain import load_artifact
from bridge.events import RequestDecoder
from bridge.ledger import Job, JobState, Ledger, NewJob
from bridge.listener import Listener
from bridge.terms import TERMS_TYPE, Terms

ABI = load_artifact("JobManager")["abi"]
ADDRESS = Web3.to_checksum_address("0x" + "11" * 20)
TOPIC = "0x" + RequestDecoder.from_abi(ABI).topic.hex()
REQUESTER = Web3.to_checksum_address("0x" + "ab" * 20)
CHAIN = 31337


def word(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def block_hash(n: int, fork: int = 0) -> str:
    return word(n + 1000 * fork + 7)


def request_log(job_id: int, block: int, index: int, spec: bytes = b'{"image":"x"}',
                data: str | None = None) -> dict[str, Any]:
    terms = Terms(REQUESTER, REQUESTER, 10**12, 1_700_000_000, 200_000, 1, 600, False,
                  job_id.to_bytes(32, "big"))
    encoded = "0x" + abi_encode([TERMS_TYPE, "bytes"], [terms.as_tuple(), spec]).hex()
    return {"address": ADDRESS.lower(), "topics": [TOPIC, word(job_id), word(0), word(0)],
            "data": encoded if data is None else data, "blockNumber": hex(block),
            "blockHash": block_hash(block), "transactionHash": word(10**6 + job_id),
            "transactionIndex": hex(index), "logIndex": hex(index), "removed": False}


class FakeNode(JSONBaseProvider):
    """Answers what the listener asks, from a list of raw logs; refuses `eth_getLogs` wider than
    `max_range` blocks as hosted RPCs do; counts the calls."""

    def __init__(self, head: int, logs: list[dict[str, Any]], max_range: int = 10**9) -> None:
        super().__init__()
        self.head, self.logs, self.max_range = head, logs, max_range
        self.log_ranges: list[tuple[int, int]] = []

    def make_request(self, method: Any, params: Any) -> Any:
        if method == "eth_chainId":
            return {"jsonrpc": "2.0", "id": 1, "result": hex(CHAIN)}
        if method == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": 1, "result": hex(self.head)}
        if method == "eth_getBlockByNumber":
            n = int(params[0], 16)
            return {"jsonrpc": "2.0", "id": 1, "result": {
                "number": hex(n), "hash": block_hash(n), "parentHash": block_hash(n - 1),
                "timestamp": "0x1", "transactions": [], "gasLimit": "0x1", "gasUsed": "0x0"}}
        if method == "eth_getLogs":
            query = params[0]
            low, high = int(query["fromBlock"], 16), int(query["toBlock"], 16)
            assert query["topics"] == [TOPIC] and query["address"] == ADDRESS
            if high - low + 1 > self.max_range:
                return {"jsonrpc": "2.0", "id": 1,
                        "error": {"code": -32005, "message": "query exceeds max block range"}}
            self.log_ranges.append((low, high))
            found = [raw for raw in self.logs if low <= int(raw["blockNumber"], 16) <= high]
            return json.loads(json.dumps({"jsonrpc": "2.0", "id": 1, "result": found}))
        raise NotImplementedError(method)


def make_listener(tmp_path: Path, node: FakeNode, chunk: int = 100) -> tuple[Listener, Ledger]:
    w3 = Web3(node)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    return Listener(w3, w3.eth.contract(address=ADDRESS, abi=ABI), ledger, 0, 0, chunk), ledger


def test_a_backlog_is_read_with_one_get_logs_per_range(tmp_path: Path) -> None:
    logs = [request_log(j, 1 + j // 10 * 37, j % 10) for j in range(200)]  # 20 blocks of 10
    node = FakeNode(head=800, logs=logs)
    poller, ledger = make_listener(tmp_path, node, chunk=100)
    assert poller.poll() == 200
    assert node.log_ranges == [(a, min(a + 99, 800)) for a in range(0, 801, 100)]
    jobs = ledger.all_jobs(CHAIN, ADDRESS)
    assert [j.job_id for j in jobs] == list(range(200))
    assert {j.state for j in jobs} == {JobState.REQUESTED}
    assert jobs[13].request_hash == word(13) and jobs[13].tx_hash == word(10**6 + 13)
    assert jobs[13].block_hash == block_hash(jobs[13].block_number)
    checkpoint = ledger.checkpoint(CHAIN, ADDRESS)
    assert checkpoint is not None and (checkpoint.block_number, checkpoint.block_hash) == (
        800, block_hash(800))
    assert poller.poll() == 0  # nothing past the checkpoint


def test_hostile_logs_are_skipped_or_rejected_and_the_range_goes_on(tmp_path: Path) -> None:
    logs = [request_log(1, 5, 0), request_log(2, 5, 1, data="0x" + "00" * 40),
            request_log(3, 5, 2, data="0xnothex"), request_log(4, 6, 0, spec=b'{"image":"\xff"}'),
            dict(request_log(5, 6, 1), topics=[TOPIC, word(5)]), request_log(6, 7, 0)]
    node = FakeNode(head=10, logs=logs)
    poller, ledger = make_listener(tmp_path, node)
    undecodable = metrics.UNDECODABLE_LOGS._value.get()
    assert poller.poll() == 3
    assert metrics.UNDECODABLE_LOGS._value.get() == undecodable + 3
    jobs = {j.job_id: j for j in ledger.all_jobs(CHAIN, ADDRESS)}
    assert sorted(jobs) == [1, 4, 6]
    assert jobs[4].state == JobState.REJECTED and jobs[4].reason is not None
    assert jobs[4].reason.startswith("invalid spec: not UTF-8")
    assert [e.kind for e in ledger.timeline(CHAIN, ADDRESS, 4)] == ["requested", "rejected"]


def test_refused_ranges_are_halved_and_a_refused_single_block_raises(tmp_path: Path) -> None:
    logs = [request_log(1, 3, 0), request_log(2, 250, 0)]
    node = FakeNode(head=300, logs=logs, max_range=40)
    poller, ledger = make_listener(tmp_path, node, chunk=200)
    assert poller.poll() == 2
    assert max(high - low + 1 for low, high in node.log_ranges) <= 40
    assert [j.job_id for j in ledger.all_jobs(CHAIN, ADDRESS)] == [1, 2]
    node = FakeNode(head=10, logs=[], max_range=0)
    (tmp_path / "refusing").mkdir()
    poller, _ = make_listener(tmp_path / "refusing", node, chunk=1)
    with pytest.raises(Web3RPCError, match="max block range"):
        poller.poll()


# -- the bulk write against the per-job one ----------------------------------------------------

def new_job(job_id: int, block: int, tx: int | None = None, reason: str | None = None) -> NewJob:
    return NewJob(job_id=job_id, requester=REQUESTER, consumer=REQUESTER, spec="{}",
                  fee_wei=10**12 + job_id, deadline=1_700_000_000, block_number=block,
                  block_hash=block_hash(block), tx_hash=word(tx if tx is not None else job_id),
                  log_index=job_id % 3, callback_gas_limit=100, request_hash=word(job_id),
                  reason=reason, replicas=2, lease_s=60, restricted=True)


def state_of(ledger: Ledger) -> tuple[list[Any], list[Any], list[Any], Any]:
    volatile = {"created_at", "updated_at"}
    jobs = [{c: getattr(j, c) for c in Job.__table__.columns.keys() if c not in volatile}  # noqa: SIM118
            for j in ledger.all_jobs(CHAIN, ADDRESS)]
    timelines = [(j["job_id"], [(e.kind, e.detail) for e in ledger.timeline(CHAIN, ADDRESS,
                                                                            j["job_id"])])
                 for j in jobs]
    blocks = [(b.block_number, b.block_hash) for b in ledger.recent_blocks(CHAIN, ADDRESS)]
    checkpoint = ledger.checkpoint(CHAIN, ADDRESS)
    return jobs, timelines, blocks, checkpoint and (checkpoint.block_number, checkpoint.block_hash)


def both(tmp_path: Path, ledger_url: str) -> tuple[Ledger, Ledger]:
    """The per-job reference (SQLite) and the bulk write on each supported database."""
    return Ledger(f"sqlite:///{tmp_path / 'per-job.sqlite'}"), Ledger(ledger_url)


def test_the_bulk_write_leaves_what_the_per_job_write_leaves(tmp_path: Path, ledger_url: str) -> None:
    per_job, bulk = both(tmp_path, ledger_url)
    ranges = [([new_job(j, 10 + j // 4, reason="bad spec" if j % 7 == 0 else None)
                for j in range(12)], 20),
              ([], 40),  # a range without requests still moves the checkpoint
              ([new_job(j, 45 + j) for j in range(12, 1200)], 1300)]  # more ids than one IN (…)
    for jobs, end in ranges:
        blocks = {end: block_hash(end)} | {j.block_number: j.block_hash for j in jobs}
        assert (per_job.record_block_range(CHAIN, ADDRESS, jobs, blocks, end)
                == bulk.record_block_range_bulk(CHAIN, ADDRESS, jobs, blocks, end) == len(jobs))
        assert state_of(per_job) == state_of(bulk)
    assert len(state_of(bulk)[2]) < 1200  # old block hashes were pruned as before


def test_the_bulk_write_is_idempotent_and_handles_reorgs_as_before(tmp_path: Path, ledger_url: str) -> None:
    per_job, bulk = both(tmp_path, ledger_url)
    jobs = [new_job(j, 10 + j) for j in range(6)]
    blocks = {20: block_hash(20)} | {j.block_number: j.block_hash for j in jobs}
    for ledger in (per_job, bulk):
        ledger.record_block_range(CHAIN, ADDRESS, jobs, blocks, 20)
    # read twice: nothing new, nothing doubled
    assert bulk.record_block_range_bulk(CHAIN, ADDRESS, jobs, blocks, 20) == 0
    assert per_job.record_block_range(CHAIN, ADDRESS, jobs, blocks, 20) == 0
    assert state_of(per_job) == state_of(bulk)
    # a reorg above block 12: job 3 re-included from the same tx, job 4's id now another request
    again = [new_job(3, 13), new_job(4, 14, tx=999), new_job(5, 15), new_job(6, 16)]
    blocks = {20: block_hash(20)} | {j.block_number: j.block_hash for j in again}
    for ledger in (per_job, bulk):
        assert len(ledger.rewind(CHAIN, ADDRESS, 12, block_hash(12))) == 3
    assert (per_job.record_block_range(CHAIN, ADDRESS, again, blocks, 20)
            == bulk.record_block_range_bulk(CHAIN, ADDRESS, again, blocks, 20) == 2)
    assert state_of(per_job) == state_of(bulk)
    job3 = bulk.get(CHAIN, ADDRESS, 3)
    assert job3 is not None and job3.state == JobState.REQUESTED
    assert [e.kind for e in bulk.timeline(CHAIN, ADDRESS, 3)] == ["requested", "reorged",
                                                                  "re-included"]


def test_an_id_twice_in_one_range_is_recorded_once_as_before(tmp_path: Path, ledger_url: str) -> None:
    per_job, bulk = both(tmp_path, ledger_url)
    jobs = [new_job(1, 10), new_job(2, 11), new_job(1, 12, tx=77)]
    blocks = {20: block_hash(20)} | {j.block_number: j.block_hash for j in jobs}
    assert (per_job.record_block_range(CHAIN, ADDRESS, jobs, blocks, 20)
            == bulk.record_block_range_bulk(CHAIN, ADDRESS, jobs, blocks, 20) == 2)
    assert state_of(per_job) == state_of(bulk)
