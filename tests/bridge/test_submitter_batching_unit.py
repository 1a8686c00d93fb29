"""The submitter reads a window's jobs on-chain in one round trip and marks a batch's jobs in one
ledger transaction, while each job keeps its own outcome: a skipped item is sent again, a job the
chain ended is closed, the rest settle."""

from __future__ import annotations

from pathlib import Path

from bridge.chain import JobStatus
from bridge.claims import Claims
from bridge.ledger import JobState
from bridge.submitter import BATCH_PREFIX, FULFIL_BATCH_MAX, Submitter
from bridge.terms import result_digest
from tests.bridge.fakes import (
    CHAIN,
    CID,
    LEASE,
    OPERATOR,
    FakeChain,
    FakeTxm,
    add_job,
    job,
    new_ledger,
    set_fields,
    states,
)

NOW = 1_700_000_000
DEADLINE = NOW + 3600


def test_a_window_is_read_once_and_settled_in_batches(tmp_path: Path) -> None:
    ledger, chain, txm = new_ledger(tmp_path), FakeChain(timestamp=NOW), FakeTxm()
    submitter = Submitter(chain, txm, ledger, CHAIN, Claims(chain, txm, ledger, CHAIN, OPERATOR))
    count = FULFIL_BATCH_MAX + 5
    for i in range(1, count + 1):
        add_job(ledger, i, deadline=DEADLINE)
        chain.claimed(i, deadline=DEADLINE)
        set_fields(ledger, i, state=JobState.EXECUTED, result_cid=CID, exit_code=0,
                   lease_end=NOW + LEASE)
    chain.request(count, status=JobStatus.CANCELLED)  # ended by the chain: closed, not sent

    assert submitter.submit_ready() == count

    assert (chain.reads, chain.batch_reads) == (0, 1)  # one round trip for the whole window
    assert [tx.idempotency_key.startswith(BATCH_PREFIX) for tx in txm.txs] == [True, True]
    first, _ = txm.txs
    assert first.data.count(";") == FULFIL_BATCH_MAX - 1
    assert {job(ledger, i).submit_tx_id for i in range(1, FULFIL_BATCH_MAX + 1)} == {first.id}

    for tx in txm.txs:
        txm.mine(tx, succeeded=True)
    for i in range(1, count):
        if i != 3:  # item 3 was skipped in its batch: still ours, open
            chain.request(i, status=JobStatus.COMPLETED, digest=result_digest(CID, 0))
    assert submitter.confirm() == count - 1

    assert (chain.reads, chain.batch_reads) == (0, 2)
    final = states(ledger)
    assert final[count] == JobState.CLOSED
    assert final[3] == JobState.EXECUTED and job(ledger, 3).submit_attempts == 1
    assert [i for i, s in final.items() if s == JobState.COMPLETED] == [
        i for i in range(1, count) if i != 3]
    assert job(ledger, 1).submit_tx == first.tx_hash
