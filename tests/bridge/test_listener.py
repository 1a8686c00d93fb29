"""The listener against a real anvil: confirmations, reorg detection and re-inclusion."""

from __future__ import annotations

from pathlib import Path

from hexbytes import HexBytes
from web3.logs import DISCARD

from bridge import metrics
from bridge.chain import connect, job_manager
from bridge.ledger import JobState, Ledger
from bridge.listener import Listener
from tests.services import Chain, RangeLimit, RpcRelay

SPEC = '{"image":"cod/busybox:latest"}'
ZERO = "0x" + "0" * 40


def listener(chain: Chain, tmp_path: Path, confirmations: int) -> tuple[Listener, Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    return Listener(chain.w3, chain.manager, ledger, confirmations, 0, 2000), ledger


def request(chain: Chain) -> tuple[int, str]:
    receipt = chain.owner.transact(chain.manager.functions.requestJob(SPEC, ZERO, 0), value=10**15)
    event = chain.manager.events.JobRequested().process_receipt(receipt, errors=DISCARD)[0]
    return int(event["args"]["jobId"]), receipt["transactionHash"].to_0x_hex()


def test_requests_are_read_only_after_confirmations(chain: Chain, tmp_path: Path) -> None:
    poller, ledger = listener(chain, tmp_path, confirmations=3)
    job_id, _ = request(chain)
    assert poller.poll() == 0
    chain.mine(2)
    assert poller.poll() == 0
    chain.mine(1)
    assert poller.poll() == 1
    assert poller.poll() == 0  # read once
    assert [j.job_id for j in ledger.all_jobs(poller.chain_id, poller.address)] == [job_id]


def test_reorg_removing_a_request_marks_it_reorged(chain: Chain, tmp_path: Path) -> None:
    poller, ledger = listener(chain, tmp_path, confirmations=0)
    snapshot = chain.rpc("evm_snapshot")
    job_id, _ = request(chain)
    assert poller.poll() == 1
    reorgs_before = metrics.REORGS._value.get()
    chain.rpc("evm_revert", snapshot)  # the request's block leaves the chain
    chain.mine(3)  # and a longer chain without it grows
    assert poller.poll() == 0
    job = ledger.get(poller.chain_id, poller.address, job_id)
    assert job is not None and job.state == JobState.REORGED
    assert metrics.REORGS._value.get() == reorgs_before + 1
    assert [e.kind for e in ledger.timeline(poller.chain_id, poller.address, job_id)] == [
        "requested", "reorged"]


def test_request_reincluded_after_a_reorg_is_processed_once(chain: Chain, tmp_path: Path
                                                            ) -> None:
    poller, ledger = listener(chain, tmp_path, confirmations=0)
    job_id, tx_hash = request(chain)
    assert poller.poll() == 1
    job = ledger.get(poller.chain_id, poller.address, job_id)
    assert job is not None
    ledger.mark_dispatched(job, 1, f"{job.key}:1", "epoch")
    raw = chain.w3.eth.get_raw_transaction(HexBytes(tx_hash)).to_0x_hex()
    old_block = job.block_number
    chain.rpc("anvil_reorg", 1, [[raw, 0]])  # replace the last block; the same tx mined again
    chain.mine(1)
    assert poller.poll() == 0  # nothing new: the same request came back
    after = ledger.get(poller.chain_id, poller.address, job_id)
    assert after is not None
    assert after.state == JobState.DISPATCHED  # work already under way goes on
    assert after.block_hash != job.block_hash or after.block_number != old_block
    assert [e.kind for e in ledger.timeline(poller.chain_id, poller.address, job_id)] == [
        "requested", "queued", "reorged", "re-included"]


def test_log_ranges_shrink_when_the_rpc_refuses_them(chain: Chain, tmp_path: Path) -> None:
    first, _ = request(chain)
    chain.mine(300)
    second, _ = request(chain)
    limit = RangeLimit(max_blocks=50)
    rpc = RpcRelay(chain.url, limit)
    try:
        w3 = connect(rpc.url)
        ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
        poller = Listener(w3, job_manager(w3, str(chain.manager.address)), ledger, 0, 0, 2000)
        assert poller.poll() == 2
    finally:
        rpc.close()
    assert limit.refused >= 1  # it tried wide ranges first …
    assert limit.log_requests and max(limit.log_requests) <= 50  # … then read in ranges that pass
    assert [j.job_id for j in ledger.all_jobs(poller.chain_id, poller.address)] == [first, second]
