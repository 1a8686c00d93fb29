"""Replicated jobs (replicas > 1) in the bridge, on a real ledger over fakes of the chain and the
transaction manager: a free or lapsed slot is claimed, a job whose slots are all held is left
until a lease ends, a job we lapsed on is left alone; a result is committed with a salt kept in the
ledger first, revealed once the reveal phase may open, finalized once every committed replica
revealed; the chain's verdict (agreed, outvoted, disagreement) is what the ledger records."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.chain import JobStatus, OnChainJob, ReplicaState
from bridge.claims import Claims
from bridge.ledger import JobState
from bridge.replication import Replication, may_open_reveal
from bridge.submitter import Submitter
from bridge.terms import commitment_of, result_digest
from tests.bridge.fakes import (
    CHAIN,
    CID,
    CONTRACT,
    LEASE,
    OPERATOR,
    OTHER_CID,
    OTHER_OPERATOR,
    FakeChain,
    FakeTxm,
    add_job,
    events,
    job,
    new_ledger,
    set_fields,
    terms,
)

NOW = 1_700_000_000
THIRD_OPERATOR = "0x" + "7" * 40
K = 3


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.ledger = new_ledger(tmp_path)
        self.chain = FakeChain(timestamp=NOW)
        self.txm = FakeTxm()
        self.claims = Claims(self.chain, self.txm, self.ledger, CHAIN, OPERATOR)
        self.replication = Replication(self.chain, self.txm, self.ledger, CHAIN, OPERATOR)
        self.submitter = Submitter(self.chain, self.txm, self.ledger, CHAIN, self.claims,
                                   self.replication)
        self.digest = terms(replicas=K).digest()

    def request(self, job_id: int = 1, status: JobStatus = JobStatus.REQUESTED) -> None:
        add_job(self.ledger, job_id, replicas=K)
        self.chain.jobs[job_id] = OnChainJob(status, digest=self.digest)

    def executed(self, job_id: int = 1) -> None:
        """We hold slot 0 and ran the job: its result is to be committed."""
        self.request(job_id, JobStatus.CLAIMED)
        self.chain.slot(job_id, 0, OPERATOR, ReplicaState.CLAIMED)
        set_fields(self.ledger, job_id, state=JobState.EXECUTED, result_cid=CID, exit_code=0,
                   result="2a", lease_end=NOW + LEASE)

    def mine_last(self, succeeded: bool = True) -> str:
        tx = self.txm.txs[-1]
        self.txm.mine(tx, succeeded=succeeded)
        return tx.data


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# -- claiming a slot ---------------------------------------------------------------------------------
def test_a_free_slot_is_claimed_and_ours_once_mined(world: World) -> None:
    world.request()
    world.chain.slot(1, 0, OTHER_OPERATOR, ReplicaState.CLAIMED)

    assert world.claims.claim(job(world.ledger, 1)) is False
    assert world.txm.txs[-1].data == f"claimJob(1,{world.digest.hex()})"
    world.mine_last()
    world.chain.slot(1, 1, OPERATOR, ReplicaState.CLAIMED, lease_end=NOW + 60)
    world.claims.confirm()

    claimed = job(world.ledger, 1)
    assert claimed.state == JobState.CLAIMED and claimed.lease_end == NOW + 60


def test_a_slot_already_ours_is_not_claimed_again(world: World) -> None:
    world.request(status=JobStatus.CLAIMED)
    world.chain.slot(1, 2, OPERATOR, ReplicaState.CLAIMED, lease_end=NOW + 99)

    assert world.claims.claim(job(world.ledger, 1)) is True
    assert world.txm.txs == [] and job(world.ledger, 1).state == JobState.CLAIMED


def test_all_slots_held_waits_for_the_first_lease_to_end(world: World) -> None:
    world.request(status=JobStatus.CLAIMED)
    for index, (holder, end) in enumerate([(OTHER_OPERATOR, NOW + 50), (THIRD_OPERATOR, NOW + 20),
                                           ("0x" + "6" * 40, NOW + 80)]):
        world.chain.slot(1, index, holder, ReplicaState.CLAIMED, lease_end=end)

    world.claims.claim(job(world.ledger, 1))

    waiting = job(world.ledger, 1)
    assert world.txm.txs == [] and waiting.state == JobState.REQUESTED
    assert events(world.ledger, 1)[-1] == "held-elsewhere"
    assert THIRD_OPERATOR in world.ledger.timeline(CHAIN, CONTRACT, 1)[-1].detail


def test_a_lapsed_slot_is_claimed(world: World) -> None:
    world.request(status=JobStatus.CLAIMED)
    world.chain.slot(1, 0, OTHER_OPERATOR, ReplicaState.COMMITTED, lease_end=NOW - 500)
    world.chain.slot(1, 1, THIRD_OPERATOR, ReplicaState.CLAIMED, lease_end=NOW - 1)  # lapsed
    world.chain.slot(1, 2, "0x" + "6" * 40, ReplicaState.COMMITTED)

    world.claims.claim(job(world.ledger, 1))

    assert world.txm.txs[-1].data.startswith("claimJob(1,")


def test_a_job_we_lapsed_on_is_left_alone(world: World) -> None:
    world.request(status=JobStatus.CLAIMED)
    world.chain.lapsed.add((1, OPERATOR))

    world.claims.claim(job(world.ledger, 1))

    assert world.txm.txs == [] and job(world.ledger, 1).state == JobState.CLOSED
    assert "lapsed before" in world.ledger.timeline(CHAIN, CONTRACT, 1)[-1].detail


def test_a_key_below_the_minimum_stake_claims_nothing(world: World) -> None:
    world.request()
    world.chain.stake = 10**16  # slashed below the 0.1 ETH minimum

    world.claims.claim(job(world.ledger, 1))

    assert world.txm.txs == []
    waiting = job(world.ledger, 1)
    assert waiting.state == JobState.REQUESTED and waiting.not_before > 0


# -- commit → reveal → finalize ----------------------------------------------------------------------
def test_a_result_is_committed_with_a_salt_kept_first(world: World) -> None:
    world.executed()

    world.submitter.submit_ready()

    committing = job(world.ledger, 1)
    assert committing.state == JobState.COMMITTING and committing.salt is not None
    salt = bytes.fromhex(committing.salt[2:])
    expected = commitment_of(1, OPERATOR, CID, 0, b"\x2a", salt)
    assert world.txm.txs[-1].data == f"commitResult(1,{world.digest.hex()},{expected.hex()})"
    world.mine_last()
    world.replication.advance()
    assert job(world.ledger, 1).state == JobState.COMMITTED


def test_a_commit_sent_again_keeps_its_salt(world: World) -> None:
    world.executed()
    world.submitter.submit_ready()
    salt = job(world.ledger, 1).salt
    world.mine_last(succeeded=False)  # e.g. mined after the lease: it reverted

    world.replication.advance()
    assert job(world.ledger, 1).state == JobState.EXECUTED
    set_fields(world.ledger, 1, not_before=0.0)
    world.submitter.submit_ready()

    assert len(world.txm.txs) == 2 and job(world.ledger, 1).salt == salt


def test_the_reveal_waits_for_the_others_then_opens(world: World) -> None:
    world.executed()
    world.submitter.submit_ready()
    world.mine_last()
    world.chain.slot(1, 0, OPERATOR, ReplicaState.COMMITTED, lease_end=NOW + LEASE)
    world.chain.slot(1, 1, OTHER_OPERATOR, ReplicaState.CLAIMED)
    world.replication.advance()  # committed
    sent = len(world.txm.txs)

    set_fields(world.ledger, 1, not_before=0.0)
    world.replication.advance()
    assert len(world.txm.txs) == sent, "a replica still holds a live lease: no reveal yet"

    world.chain.slot(1, 1, OTHER_OPERATOR, ReplicaState.COMMITTED)
    world.chain.jobs[1] = OnChainJob(JobStatus.REVEALING, lease_end=NOW + 600, digest=world.digest)
    set_fields(world.ledger, 1, not_before=0.0)
    world.replication.advance()

    salt = job(world.ledger, 1).salt
    assert salt is not None
    assert world.txm.txs[-1].data == (f"revealResult(1,{world.digest.hex()},{CID},0,2a,"
                                      f"{salt[2:]})")
    assert job(world.ledger, 1).state == JobState.REVEALING


def revealed(world: World) -> None:
    """Our reveal of `executed()`'s result is confirmed."""
    world.executed()
    set_fields(world.ledger, 1, state=JobState.REVEALED, salt="0x" + "11" * 32)


def test_agreement_is_finalized_and_recorded(world: World) -> None:
    revealed(world)
    ours = result_digest(CID, 0, b"\x2a")
    world.chain.jobs[1] = OnChainJob(JobStatus.COMPLETED, lease_end=NOW + 600, digest=ours,
                                     settle_pending=True)
    for index, holder in enumerate([OPERATOR, OTHER_OPERATOR, THIRD_OPERATOR]):
        world.chain.slot(1, index, holder, ReplicaState.REVEALED)

    world.replication.advance()
    assert world.txm.txs[-1].data == f"finalize(1,{world.digest.hex()})"
    world.mine_last()
    world.chain.jobs[1] = OnChainJob(JobStatus.COMPLETED, digest=ours)
    world.replication.advance()

    assert job(world.ledger, 1).state == JobState.COMPLETED
    assert events(world.ledger, 1)[-1] == "agreed"


def test_finalize_waits_while_a_committed_replica_may_still_reveal(world: World) -> None:
    revealed(world)
    world.chain.jobs[1] = OnChainJob(JobStatus.REVEALING, lease_end=NOW + 600,
                                     digest=world.digest)
    world.chain.slot(1, 0, OPERATOR, ReplicaState.REVEALED)
    world.chain.slot(1, 1, OTHER_OPERATOR, ReplicaState.COMMITTED)

    world.replication.advance()
    assert world.txm.txs == []

    world.chain.timestamp = NOW + 601  # the reveal window ended: finalize (fails: no majority)
    set_fields(world.ledger, 1, not_before=0.0)
    world.replication.advance()
    assert world.txm.txs[-1].data.startswith("finalize(1,")


def test_outvoted_and_disagreement_are_recorded_as_the_chain_says(world: World) -> None:
    revealed(world)
    world.chain.jobs[1] = OnChainJob(JobStatus.COMPLETED, digest=result_digest(OTHER_CID, 0))
    world.replication.advance()
    assert (job(world.ledger, 1).state, events(world.ledger, 1)[-1]) == (
        JobState.COMPLETED, "outvoted")

    add_job(world.ledger, 2, replicas=K)
    set_fields(world.ledger, 2, state=JobState.REVEALED, result_cid=CID, exit_code=0)
    world.chain.jobs[2] = OnChainJob(JobStatus.FAILED)
    world.replication.advance()
    assert (job(world.ledger, 2).state, events(world.ledger, 2)[-1]) == (
        JobState.FAILED, "outvoted")


def test_a_rejected_replicated_job_is_not_failed_on_chain(world: World) -> None:
    world.request()
    set_fields(world.ledger, 1, state=JobState.REJECTED, reason="image not available")

    world.submitter.submit_ready()

    assert world.txm.txs == [] and job(world.ledger, 1).state == JobState.CLOSED


@pytest.mark.parametrize("states, leases_over, opens", [
    ([ReplicaState.COMMITTED] * 3, False, True),  # everyone committed
    ([ReplicaState.COMMITTED, ReplicaState.COMMITTED, ReplicaState.CLAIMED], False, False),
    ([ReplicaState.COMMITTED, ReplicaState.COMMITTED, ReplicaState.CLAIMED], True, True),
    ([ReplicaState.COMMITTED, ReplicaState.EMPTY, ReplicaState.EMPTY], True, False),
])
def test_when_the_reveal_phase_may_open(states: list[ReplicaState], leases_over: bool,
                                        opens: bool) -> None:
    chain = FakeChain(timestamp=NOW)
    for index, state in enumerate(states):
        if state != ReplicaState.EMPTY:
            chain.slot(1, index, OTHER_OPERATOR, state, lease_end=NOW - 1 if leases_over else NOW)
    assert may_open_reveal(chain.read_replicas(1, 3), NOW) is opens
