"""Claims and settlement against a real anvil with JobManager v2: the terms the listener records
are the ones the contract checks (same digest), the bridge's key claims a job, then fulfils it
(alone, or several in one `fulfillBatch`), and the chain records our result."""

from __future__ import annotations

from pathlib import Path

from bridge.chain import JobStatus, read_job
from bridge.claims import Claims
from bridge.ledger import JobState, Ledger
from bridge.listener import Listener
from bridge.ports import ContractChain
from bridge.submitter import Submitter
from bridge.terms import Terms, result_digest
from bridge.txmanager import TxManager
from tests.services import Chain

SPEC = '{"image":"cod/busybox:latest"}'
ZERO = "0x" + "0" * 40
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


class Bridge:
    """The listener, claims and submitter of one operator, stepped by hand."""

    def __init__(self, chain: Chain, tmp_path: Path) -> None:
        self.ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
        self.listener = Listener(chain.w3, chain.manager, self.ledger, 0, 0, 2000)
        self.txm = TxManager(chain.w3, chain.oracle_key, self.ledger)
        on_chain = ContractChain(chain.manager)
        self.chain_id, self.address = self.listener.chain_id, self.listener.address
        self.claims = Claims(on_chain, self.txm, self.ledger, self.chain_id, self.txm.address)
        self.submitter = Submitter(on_chain, self.txm, self.ledger, self.chain_id, self.claims)

    def state(self, job_id: int) -> str:
        job = self.ledger.get(self.chain_id, self.address, job_id)
        assert job is not None
        return job.state

    def send(self) -> None:
        for _ in range(2):  # one pass signs and sends, the next reads the receipt
            self.txm.process()


def request(chain: Chain) -> int:
    call = chain.manager.functions.requestJob(SPEC, ZERO, 0)
    fee = chain.manager.functions.quoteFee(ZERO, 0, 1).call()
    chain.owner.transact(call, value=fee)
    return int(chain.manager.functions.nextJobId().call()) - 1


def test_the_recorded_terms_are_the_ones_the_contract_checks(chain: Chain, tmp_path: Path
                                                             ) -> None:
    bridge = Bridge(chain, tmp_path)
    job_id = request(chain)
    bridge.listener.poll()
    job = bridge.ledger.get(bridge.chain_id, bridge.address, job_id)
    assert job is not None

    terms = Terms.from_row(job)
    assert chain.manager.functions.hashTerms(terms.as_tuple()).call() == terms.digest()
    assert read_job(chain.manager, job_id).digest == terms.digest()
    assert (terms.replicas, terms.restricted) == (1, False) and terms.lease > 0


def test_a_job_is_claimed_then_fulfilled_alone_or_in_a_batch(chain: Chain, tmp_path: Path
                                                             ) -> None:
    bridge = Bridge(chain, tmp_path)
    ids = [request(chain) for _ in range(3)]
    bridge.listener.poll()
    jobs = [bridge.ledger.get(bridge.chain_id, bridge.address, i) for i in ids]
    for job in jobs:
        assert job is not None
        bridge.claims.claim(job)
    bridge.send()
    assert bridge.claims.confirm() == 3
    assert [bridge.state(i) for i in ids] == [JobState.CLAIMED] * 3
    for i in ids:
        on_chain = read_job(chain.manager, i)
        assert on_chain.status == JobStatus.CLAIMED and on_chain.held_by(bridge.txm.address)

    for job in jobs[:2]:  # two ready together: one fulfillBatch
        assert job is not None
        bridge.ledger.mark_executed(job, "node-a", CID, 0, None, "test")
    bridge.submitter.submit_ready()
    bridge.send()
    bridge.submitter.confirm()
    assert jobs[2] is not None
    bridge.ledger.mark_executed(jobs[2], "node-a", CID, 1, None, "test")  # then one alone
    bridge.submitter.submit_ready()
    bridge.send()
    bridge.submitter.confirm()

    assert [bridge.state(i) for i in ids] == [JobState.COMPLETED] * 3
    for i, code in zip(ids, (0, 0, 1), strict=True):
        on_chain = read_job(chain.manager, i)
        assert on_chain.status == JobStatus.COMPLETED
        assert on_chain.digest == result_digest(CID, code)
    assert chain.manager.functions.withdrawable(bridge.txm.address).call() > 0  # the fees
