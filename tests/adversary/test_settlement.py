"""Settlement under attack, against a real anvil: results that can never be submitted do not
block the others, an RPC hiccup is not a fatal transaction, the fee cap does not make the manager
loop on "replacement underpriced", a transaction never costs more than the job pays, and a receipt
counts only at the configured depth."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3.logs import DISCARD

from bridge.chain import GWEI, JobStatus, connect, read_job
from bridge.claims import Claims
from bridge.ledger import Ledger, TxStatus
from bridge.listener import Listener
from bridge.ports import ContractChain
from bridge.submitter import Submitter
from bridge.txmanager import TxManager
from tests.services import Chain, FailFirst, RpcRelay, anvil_chain

ZERO = "0x" + "0" * 40
SPEC = '{"image": "cod/busybox:latest", "entrypoint": ["true"]}'
GOOD_CID = "bafkreidvkskpsgfvnp5qdoeschlih3sd4xx2apdawiyjrawhrf4f46njoi"


@pytest.fixture
def chain() -> Iterator[Chain]:
    with anvil_chain() as c:
        yield c


def ledger_for(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def request(chain: Chain, count: int) -> list[int]:
    fee = int(chain.manager.functions.minFee().call())
    ids = []
    for _ in range(count):
        receipt = chain.owner.transact(chain.manager.functions.requestJob(SPEC, ZERO, 0), value=fee)
        (event,) = chain.manager.events.JobRequested().process_receipt(receipt, errors=DISCARD)
        ids.append(int(event["args"]["jobId"]))
    return ids


def test_results_that_can_never_be_submitted_do_not_block_the_others(chain: Chain,
                                                                      tmp_path: Path) -> None:
    ledger = ledger_for(tmp_path)
    ids = request(chain, 101)
    listener = Listener(chain.w3, chain.manager, ledger, 0, 0, 2000)
    listener.poll()
    txm = TxManager(chain.w3, chain.oracle_key, ledger)
    contract = ContractChain(chain.manager)
    claims = Claims(contract, txm, ledger, listener.chain_id, txm.address)
    submitter = Submitter(contract, txm, ledger, listener.chain_id, claims)
    for job in ledger.all_jobs(listener.chain_id, listener.address):  # v2: ours before it is run
        claims.claim(job)
    for _ in range(30):
        txm.process()
        claims.confirm()
        if {j.state for j in ledger.all_jobs(listener.chain_id, listener.address)} == {"claimed"}:
            break
    jobs = {j.job_id: j for j in ledger.all_jobs(listener.chain_id, listener.address)}
    assert {read_job(chain.manager, i).status for i in ids} == {JobStatus.CLAIMED}
    for job_id in ids[:100]:  # fulfilJob reverts for each: the CID is longer than the contract takes
        ledger.mark_executed(jobs[job_id], "node-1", "b" * 200, 0, None, "a CID too long")
    ledger.mark_executed(jobs[ids[100]], "node-1", GOOD_CID, 0, None, "a good CID")

    def one_pass() -> None:
        submitter.submit_ready()
        txm.process()
        submitter.confirm()

    for _ in range(3):
        one_pass()
    assert read_job(chain.manager, ids[100]).status == JobStatus.COMPLETED  # not behind the 100
    for _ in range(30):
        one_pass()
        if not any(read_job(chain.manager, i).status.open for i in ids[:100]):
            break
    # a result that cannot be delivered is failed instead: the requester is refunded per the rules
    assert {read_job(chain.manager, i).status for i in ids[:100]} == {JobStatus.FAILED}
    reasons = {j.reason for j in ledger.all_jobs(listener.chain_id, listener.address)
               if j.job_id in ids[:100]}
    assert all(r and "could not be submitted" in r for r in reasons)


def test_an_rpc_error_at_gas_estimation_is_retried_not_fatal(chain: Chain, tmp_path: Path) -> None:
    flaky = FailFirst("eth_estimateGas", 2)
    relay = RpcRelay(chain.url, flaky)
    try:
        txm = TxManager(connect(relay.url), chain.oracle_key, ledger_for(tmp_path))
        tx = txm.enqueue("k", txm.address, "0x")
        for _ in range(40):
            txm.process()
            current = txm.get(tx.id)
            assert current is not None and current.status != TxStatus.FATAL
            if current.status == TxStatus.CONFIRMED:
                break
            time.sleep(0.25)  # the retry is backed off in wall time
        done = txm.get(tx.id)
        assert done is not None and done.status == TxStatus.CONFIRMED and done.succeeded
        assert done.tries == 2 and flaky.left == 0
    finally:
        relay.close()


def test_at_the_fee_cap_a_stuck_transaction_waits_instead_of_looping(chain: Chain,
                                                                     tmp_path: Path) -> None:
    txm = TxManager(chain.w3, chain.oracle_key, ledger_for(tmp_path), bump_after_blocks=1,
                    max_fee_gwei=6)
    chain.rpc("evm_setAutomine", False)
    tx = txm.enqueue("capped", txm.address, "0x")
    txm.process()
    for _ in range(10):  # the base fee stays above anything the cap allows: bumps, then the cap
        chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(50 * GWEI))
        chain.mine()
        txm.process()  # raised "replacement transaction underpriced" on every pass at the cap
    stuck = txm.get(tx.id)
    assert stuck is not None and stuck.status == TxStatus.UNCONFIRMED
    assert int(stuck.max_fee or 0) <= 6 * GWEI
    chain.rpc("evm_setAutomine", True)
    chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(1 * GWEI))
    for _ in range(5):  # the base fee fell back: it is sent again (the node dropped it) and mined
        chain.mine()
        txm.process()
        done = txm.get(tx.id)
        assert done is not None
        if done.status == TxStatus.CONFIRMED:
            break
    assert done.status == TxStatus.CONFIRMED and done.succeeded


def test_a_transaction_never_costs_more_than_its_max_cost(chain: Chain, tmp_path: Path) -> None:
    txm = TxManager(chain.w3, chain.oracle_key, ledger_for(tmp_path), max_fee_gwei=500)
    max_cost = 60_000 * 2 * GWEI  # the job's fee: at most 2 gwei per gas for ~41k gas
    tx = txm.enqueue("bounded", txm.address, "0x", max_cost=max_cost)
    txm.process()
    txm.process()
    done = txm.get(tx.id)
    assert done is not None and done.status == TxStatus.CONFIRMED, done
    assert done.gas is not None and int(done.max_fee or 0) * done.gas <= max_cost
    receipt = chain.w3.eth.get_transaction_receipt(done.tx_hash)  # type: ignore[arg-type]
    assert receipt["gasUsed"] * receipt["effectiveGasPrice"] <= max_cost


def test_a_receipt_counts_only_at_the_configured_depth(chain: Chain, tmp_path: Path) -> None:
    txm = TxManager(chain.w3, chain.oracle_key, ledger_for(tmp_path), receipt_depth=3)
    tx = txm.enqueue("deep", txm.address, "0x")
    txm.process()  # sent, mined at once (automine)
    txm.process()
    shallow = txm.get(tx.id)
    assert shallow is not None and shallow.status == TxStatus.UNCONFIRMED
    assert shallow.mined_block is not None
    chain.mine(2)
    txm.process()
    deep = txm.get(tx.id)
    assert deep is not None and deep.status == TxStatus.CONFIRMED and deep.succeeded
    assert deep.bumps == 0  # a mined, shallow transaction is not replaced
