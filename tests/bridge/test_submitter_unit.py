"""The submitter's decisions, on a real ledger with a fake chain and transaction manager: which
transaction settles a job, when a result is failed instead, and when it gives up; v2: only a job
we hold is settled, quoting its terms, a rejected job never claimed is claimed first, and several
results go in one `fulfillBatch` whose skipped items are sent again; the small result a node's
outcome carried goes with its CID, and a mined batch's item counts as ours only if the stored
digest binds it too."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.chain import JobStatus
from bridge.claims import Claims
from bridge.ledger import JobState, TxStatus
from bridge.submitter import BATCH_PREFIX, DEADLINE_MARGIN_S, MAX_SUBMIT_ATTEMPTS, Submitter
from bridge.terms import result_digest
from tests.bridge.fakes import (
    CHAIN,
    CID,
    CONTRACT,
    FEE,
    LEASE,
    OPERATOR,
    OTHER_OPERATOR,
    FakeChain,
    FakeTxm,
    add_job,
    events,
    job,
    new_ledger,
    set_fields,
    states,
    terms,
)

NOW = 1_700_000_000
DEADLINE = NOW + 3600
DIGEST = terms(deadline=DEADLINE).digest().hex()  # what every call quotes for these jobs


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.ledger = new_ledger(tmp_path)
        self.chain = FakeChain(timestamp=NOW)
        self.txm = FakeTxm()
        self.claims = Claims(self.chain, self.txm, self.ledger, CHAIN, OPERATOR)
        self.submitter = Submitter(self.chain, self.txm, self.ledger, CHAIN, self.claims)

    def executed(self, job_id: int, deadline: int = DEADLINE, result: str = "") -> str:
        """A job we claimed and ran: its result (and small result, hex) is to be fulfilled."""
        added = add_job(self.ledger, job_id, deadline=deadline)
        self.chain.claimed(job_id, deadline=deadline)
        set_fields(self.ledger, job_id, state=JobState.EXECUTED, result_cid=CID, exit_code=0,
                   lease_end=NOW + LEASE, result=result)
        return added.key

    def rejected(self, job_id: int, reason: str, claimed: bool = True) -> str:
        """A job to be failed: claimed by us (rejected after the claim), or never claimed."""
        added = add_job(self.ledger, job_id, deadline=DEADLINE)
        if claimed:
            self.chain.claimed(job_id, deadline=DEADLINE)
            set_fields(self.ledger, job_id, lease_end=NOW + LEASE)
        else:
            self.chain.request(job_id, deadline=DEADLINE)
        set_fields(self.ledger, job_id, state=JobState.REJECTED, reason=reason)
        return added.key


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_an_executed_job_is_fulfilled(world: World) -> None:
    key = world.executed(1)

    assert world.submitter.submit_ready() == 1

    (tx,) = world.txm.txs
    assert (tx.idempotency_key, tx.to, tx.data, tx.max_cost) == (
        f"fulfill:{key}:0", CONTRACT, f"fulfillJob(1,{DIGEST},{CID},0,)", str(FEE))
    submitting = job(world.ledger, 1)
    assert (submitting.state, submitting.submit_tx_id) == (JobState.SUBMITTING, tx.id)
    assert world.submitter.submit_ready() == 0  # in flight: not recorded twice
    assert world.submitter.confirm() == 0  # not mined yet

    world.txm.mine(tx, succeeded=True)
    assert world.submitter.confirm() == 1

    done = job(world.ledger, 1)
    assert (done.state, done.submit_tx) == (JobState.COMPLETED, tx.tx_hash)
    assert events(world.ledger, 1)[-2:] == ["submitting", "fulfilled"]
    assert len(world.txm.txs) == 1


def test_a_rejected_job_is_failed_on_chain_with_its_reason(world: World) -> None:
    key = world.rejected(1, "image not found")

    world.submitter.submit_ready()

    (tx,) = world.txm.txs
    assert (tx.idempotency_key, tx.data, tx.max_cost) == (
        f"fail:{key}:0", f"failJob(1,{DIGEST},image not found)", None)
    world.txm.mine(tx, succeeded=True)
    assert world.submitter.confirm() == 1
    assert job(world.ledger, 1).state == JobState.FAILED
    assert events(world.ledger, 1)[-1] == "failed-on-chain"


def test_a_long_reason_is_cut_to_what_the_contract_takes(world: World) -> None:
    world.rejected(1, "é" * 400)

    world.submitter.submit_ready()

    (tx,) = world.txm.txs
    reason = tx.data.split(",", 2)[2].removesuffix(")")
    assert len(reason.encode()) <= 256 and reason.endswith("...")


def test_a_result_ready_too_close_to_the_deadline_is_failed_instead(world: World) -> None:
    world.executed(1, deadline=NOW + DEADLINE_MARGIN_S - 1)
    world.executed(2, deadline=NOW + DEADLINE_MARGIN_S)  # just in time

    world.submitter.submit_ready()

    by_job = {tx.data.split("(")[1].split(",")[0]: tx for tx in world.txm.txs}
    assert by_job["1"].idempotency_key.startswith("fail:")
    assert "too close to the job's deadline" in by_job["1"].data
    assert by_job["2"].idempotency_key.startswith("fulfill:")


@pytest.mark.parametrize("status, state", [(JobStatus.COMPLETED, JobState.COMPLETED),
                                           (JobStatus.FAILED, JobState.FAILED),
                                           (JobStatus.CANCELLED, JobState.CLOSED),
                                           (JobStatus.NONE, JobState.CLOSED)])
def test_a_job_the_chain_has_already_ended_is_closed_without_a_transaction(
        world: World, status: JobStatus, state: JobState) -> None:
    world.executed(1)
    if status == JobStatus.NONE:
        del world.chain.jobs[1]  # reorged out
    else:
        world.chain.request(1, status=status)

    world.submitter.submit_ready()

    assert world.txm.txs == []
    assert states(world.ledger) == {1: state}
    assert events(world.ledger, 1)[-1] == "closed"


def test_a_job_whose_id_now_belongs_to_another_request_is_closed(world: World) -> None:
    world.executed(1)
    world.chain.request(1, requester="0x" + "2" * 40)

    world.submitter.submit_ready()

    assert world.txm.txs == []
    assert states(world.ledger) == {1: JobState.CLOSED}


def cycle(world: World, succeeded: bool = False) -> None:
    world.submitter.submit_ready()
    tx = world.txm.txs[-1]
    world.txm.mine(tx, succeeded=succeeded)
    world.submitter.confirm()


def test_repeated_reverts_fail_the_job_instead_then_give_up(world: World) -> None:
    key = world.executed(1)

    for n in range(MAX_SUBMIT_ATTEMPTS - 1):
        cycle(world)
        retried = job(world.ledger, 1)
        assert (retried.state, retried.submit_attempts) == (JobState.EXECUTED, n + 1)
    cycle(world)  # the last fulfilment reverts: the result cannot be delivered

    failing = job(world.ledger, 1)
    assert (failing.state, failing.submit_attempts) == (JobState.REJECTED, 0)
    assert failing.reason is not None
    assert failing.reason.startswith(
        f"the result could not be submitted after {MAX_SUBMIT_ATTEMPTS} attempts")
    assert [tx.idempotency_key for tx in world.txm.txs] == [
        f"fulfill:{key}:{n}" for n in range(MAX_SUBMIT_ATTEMPTS)]

    for _ in range(MAX_SUBMIT_ATTEMPTS):
        cycle(world)  # failJob keeps reverting too

    gone = job(world.ledger, 1)
    assert gone.state == JobState.ABANDONED
    assert [tx.idempotency_key for tx in world.txm.txs[MAX_SUBMIT_ATTEMPTS:]] == [
        f"fail:{key}:{n}" for n in range(MAX_SUBMIT_ATTEMPTS)]
    assert events(world.ledger, 1)[-1] == "abandoned"
    world.submitter.submit_ready()
    assert len(world.txm.txs) == 2 * MAX_SUBMIT_ATTEMPTS  # nothing more is sent


def test_a_transaction_that_could_not_be_sent_is_retried(world: World) -> None:
    key = world.executed(1)
    world.submitter.submit_ready()
    world.txm.txs[0].status = TxStatus.FATAL
    world.txm.txs[0].error = "gas estimation reverted"

    assert world.submitter.confirm() == 1
    assert (job(world.ledger, 1).state, job(world.ledger, 1).submit_attempts) == (
        JobState.EXECUTED, 1)
    cycle(world, succeeded=True)

    assert [tx.idempotency_key for tx in world.txm.txs] == [f"fulfill:{key}:0",
                                                            f"fulfill:{key}:1"]
    assert states(world.ledger) == {1: JobState.COMPLETED}


def test_a_revert_because_the_chain_ended_the_job_closes_it(world: World) -> None:
    world.executed(1)
    world.submitter.submit_ready()
    world.chain.request(1, status=JobStatus.CANCELLED)  # cancelled meanwhile: our tx reverted
    world.txm.mine(world.txm.txs[0], succeeded=False)

    assert world.submitter.confirm() == 1

    assert states(world.ledger) == {1: JobState.CLOSED}
    world.submitter.submit_ready()
    assert len(world.txm.txs) == 1


# -- v2: claims, terms, batches -----------------------------------------------------------------


def test_a_rejected_job_never_claimed_is_claimed_then_failed(world: World) -> None:
    key = world.rejected(1, "invalid spec: not UTF-8 text", claimed=False)

    world.submitter.submit_ready()

    (claim,) = world.txm.txs
    assert (claim.idempotency_key, claim.data) == (f"claim:{key}:0", f"claimJob(1,{DIGEST})")
    assert job(world.ledger, 1).state == JobState.CLAIMING
    world.txm.mine(claim, succeeded=True)
    world.chain.claimed(1, deadline=DEADLINE)
    assert world.claims.confirm() == 1
    assert job(world.ledger, 1).state == JobState.REJECTED  # claimed: now it can be failed

    world.submitter.submit_ready()

    assert world.txm.txs[-1].data == f"failJob(1,{DIGEST},invalid spec: not UTF-8 text)"
    assert events(world.ledger, 1)[-3:] == ["claiming", "claimed", "submitting"]


def test_a_job_another_operator_took_over_is_closed_without_a_transaction(world: World) -> None:
    world.executed(1)
    world.chain.claimed(1, by=OTHER_OPERATOR, deadline=DEADLINE)  # our lease lapsed; reclaimed

    world.submitter.submit_ready()

    assert world.txm.txs == []
    assert states(world.ledger) == {1: JobState.CLOSED}


def test_several_results_go_in_one_batch_and_a_skipped_item_is_sent_again(world: World) -> None:
    keys = [world.executed(i) for i in (1, 2, 3)]

    assert world.submitter.submit_ready() == 3

    (batch,) = world.txm.txs
    assert batch.idempotency_key.startswith(BATCH_PREFIX)
    assert batch.data == "fulfillBatch(" + ";".join(
        f"{i},{DIGEST},{CID},0," for i in (1, 2, 3)) + ")"
    assert batch.max_cost == str(3 * FEE)
    assert {job(world.ledger, i).submit_tx_id for i in (1, 2, 3)} == {batch.id}

    world.txm.mine(batch, succeeded=True)
    for i in (1, 3):  # settled with our result; job 2 was skipped (still claimed by us)
        world.chain.request(i, status=JobStatus.COMPLETED, digest=result_digest(CID, 0))
    assert world.submitter.confirm() == 3

    assert states(world.ledger) == {1: JobState.COMPLETED, 2: JobState.EXECUTED,
                                    3: JobState.COMPLETED}
    assert job(world.ledger, 2).submit_attempts == 1
    world.submitter.submit_ready()
    assert world.txm.txs[-1].idempotency_key == f"fulfill:{keys[1]}:1"  # alone now: one call


def test_a_batch_item_completed_with_another_result_is_closed_as_completed(world: World) -> None:
    world.executed(1)
    world.executed(2)
    world.submitter.submit_ready()
    world.txm.mine(world.txm.txs[0], succeeded=True)
    world.chain.request(1, status=JobStatus.COMPLETED, digest=result_digest(CID, 0))
    world.chain.request(2, status=JobStatus.COMPLETED, digest=result_digest("other", 1))

    world.submitter.confirm()

    assert states(world.ledger) == {1: JobState.COMPLETED, 2: JobState.COMPLETED}
    assert events(world.ledger, 1)[-1] == "fulfilled"
    assert events(world.ledger, 2)[-1] == "closed"  # not by us: no fulfilment recorded as ours


def test_fulfill_job_passes_the_small_result(world: World) -> None:
    world.executed(1, result=b"42\n".hex())
    assert world.submitter.submit_ready() == 1
    (tx,) = world.txm.txs
    assert tx.data == f"fulfillJob(1,{DIGEST},{CID},0,{b'42'.hex()}0a)"


def test_a_batch_passes_each_result_and_checks_it_in_the_digest(world: World) -> None:
    world.executed(1, result="01")
    world.executed(2)  # none: empty bytes, as before
    world.submitter.submit_ready()
    (batch,) = world.txm.txs
    assert batch.data == f"fulfillBatch(1,{DIGEST},{CID},0,01;2,{DIGEST},{CID},0,)"

    world.txm.mine(batch, succeeded=True)
    world.chain.request(1, status=JobStatus.COMPLETED, digest=result_digest(CID, 0, b"\x01"))
    world.chain.request(2, status=JobStatus.COMPLETED, digest=result_digest(CID, 0, b"\x01"))
    world.submitter.confirm()
    assert states(world.ledger) == {1: JobState.COMPLETED, 2: JobState.COMPLETED}
    assert job(world.ledger, 1).submit_tx == batch.tx_hash
    assert events(world.ledger, 1)[-1] == "fulfilled"
    assert events(world.ledger, 2)[-1] == "closed"  # completed with another result: not by us
