"""Claims (JobManager v2), on a real ledger with a real dispatcher and reconciler over fakes: a job is
claimed before it is sent and sent only once the claim is confirmed; a job another operator holds
is skipped until its lease ends; a lost race backs off; what cannot be claimed is left to others."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.chain import JobStatus
from bridge.claims import LOST_BACKOFF_S, MAX_CLAIM_ATTEMPTS, Claims
from bridge.dispatcher import Dispatcher
from bridge.ledger import JobState, TxStatus
from bridge.reconciler import Reconciler
from tests.bridge.fakes import (
    CHAIN,
    CONTRACT,
    LEASE,
    OPERATOR,
    OTHER_OPERATOR,
    FakeBoard,
    FakeChain,
    FakeEpoch,
    FakeTasks,
    FakeTxm,
    add_job,
    events,
    job,
    new_ledger,
    node,
    set_fields,
    spec,
    terms,
)

NOW = 1_700_000_000


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.ledger = new_ledger(tmp_path)
        self.tasks = FakeTasks()
        self.board = FakeBoard([node("node-a")])
        self.chain = FakeChain(timestamp=NOW)
        self.txm = FakeTxm()
        self.claims = Claims(self.chain, self.txm, self.ledger, CHAIN, OPERATOR)
        self.dispatcher = Dispatcher(self.tasks, self.board, self.ledger, FakeEpoch(), CHAIN,
                                     CONTRACT, claims=self.claims)

    def request(self, job_id: int, job_spec: str = spec(), **fields: object) -> str:
        added = add_job(self.ledger, job_id, job_spec, **fields)  # type: ignore[arg-type]
        self.chain.request(job_id)
        return added.key

    def confirm_claim(self, job_id: int, succeeded: bool = True) -> None:
        """Our claim transaction is mined (and, if it succeeded, we hold the job)."""
        tx = self.txm.txs[-1]
        self.txm.mine(tx, succeeded=succeeded)
        if succeeded:
            self.chain.claimed(job_id)
        self.claims.confirm()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_job_is_claimed_first_and_sent_once_the_claim_is_confirmed(world: World) -> None:
    key = world.request(1)

    world.dispatcher.dispatch_pending()

    (claim,) = world.txm.txs
    assert (claim.idempotency_key, claim.to, claim.data) == (
        f"claim:{key}:0", CONTRACT, f"claimJob(1,{terms().digest().hex()})")
    assert job(world.ledger, 1).state == JobState.CLAIMING
    assert world.tasks.sent == []  # nothing runs before the claim is confirmed
    world.dispatcher.dispatch_pending()
    assert len(world.txm.txs) == 1 and world.tasks.sent == []  # claiming: not claimed twice
    assert world.claims.confirm() == 0  # not mined yet

    world.confirm_claim(1)

    claimed = job(world.ledger, 1)
    assert (claimed.state, claimed.lease_end) == (JobState.CLAIMED, NOW + LEASE)
    world.dispatcher.dispatch_pending()
    assert [s.job_key for s in world.tasks.sent] == [key]
    assert job(world.ledger, 1).state == JobState.DISPATCHED
    assert events(world.ledger, 1) == ["requested", "claiming", "claimed", "queued"]


def test_a_job_no_node_can_serve_is_not_claimed(world: World) -> None:
    world.board.nodes = []
    world.request(1)

    world.dispatcher.dispatch_pending()

    assert world.txm.txs == []  # its lease would run out while it waits
    assert job(world.ledger, 1).state == JobState.REQUESTED


def test_a_bad_spec_is_rejected_without_a_claim(world: World) -> None:
    world.request(1, "not json")

    world.dispatcher.dispatch_pending()

    assert world.txm.txs == []  # the submitter claims it when it fails it
    assert job(world.ledger, 1).state == JobState.REJECTED


def test_a_job_held_by_another_operator_is_skipped_until_its_lease_ends(world: World) -> None:
    world.request(1)
    world.chain.claimed(1, by=OTHER_OPERATOR, lease_end=NOW + 100)

    before = time.time()
    world.dispatcher.dispatch_pending()

    skipped = job(world.ledger, 1)
    assert world.txm.txs == [] and world.tasks.sent == []
    assert skipped.state == JobState.REQUESTED
    assert skipped.not_before >= before + 100  # looked at again after the lease
    assert skipped.claim_attempts == 0  # nothing was tried
    assert events(world.ledger, 1)[-1] == "held-elsewhere"


def test_a_lapsed_lease_of_another_operator_is_claimed(world: World) -> None:
    world.request(1)
    world.chain.claimed(1, by=OTHER_OPERATOR, lease_end=NOW - 1)

    world.dispatcher.dispatch_pending()

    assert [tx.idempotency_key.split(":")[0] for tx in world.txm.txs] == ["claim"]
    assert job(world.ledger, 1).state == JobState.CLAIMING


def test_a_job_already_ours_on_chain_is_sent_without_a_claim(world: World) -> None:
    key = world.request(1)
    world.chain.claimed(1)  # our claim was confirmed before a restart lost that

    world.dispatcher.dispatch_pending()

    assert world.txm.txs == []
    assert [s.job_key for s in world.tasks.sent] == [key]


def test_a_lost_race_backs_off_then_leaves_the_job_to_others(world: World) -> None:
    key = world.request(1)

    for attempt in range(MAX_CLAIM_ATTEMPTS):
        world.dispatcher.dispatch_pending()
        tx = world.txm.txs[-1]
        assert tx.idempotency_key == f"claim:{key}:{attempt}"
        tx.status, tx.error = TxStatus.FATAL, "estimation reverted: JobManagerCannotClaim"
        before = time.time()
        world.claims.confirm()
        lost = job(world.ledger, 1)
        if attempt + 1 < MAX_CLAIM_ATTEMPTS:
            assert (lost.state, lost.claim_attempts) == (JobState.REQUESTED, attempt + 1)
            assert lost.not_before >= before + LOST_BACKOFF_S * 2 ** attempt
            assert events(world.ledger, 1)[-1] == "claim-lost"
            set_fields(world.ledger, 1, not_before=0.0)  # time passes

    assert job(world.ledger, 1).state == JobState.CLOSED
    assert world.tasks.sent == []


def test_a_claim_that_reverted_because_another_got_it_waits_for_their_lease(
        world: World) -> None:
    world.request(1)
    world.dispatcher.dispatch_pending()
    world.txm.mine(world.txm.txs[-1], succeeded=False)  # mined after theirs: reverted
    world.chain.claimed(1, by=OTHER_OPERATOR, lease_end=NOW + 50)

    world.claims.confirm()

    assert job(world.ledger, 1).state == JobState.REQUESTED
    assert events(world.ledger, 1)[-1] == "held-elsewhere"


@pytest.mark.parametrize("fields, why", [
    ({"restricted": True}, "only the claimers its request names"),
    ({"deadline": NOW - 1}, "deadline passed"),
])
def test_what_this_bridge_cannot_claim_is_left_to_others(
        world: World, fields: dict[str, object], why: str) -> None:
    add_job(world.ledger, 1, spec(), **fields)  # type: ignore[arg-type]
    world.chain.request(1, digest=terms(**fields).digest())  # type: ignore[arg-type]

    world.dispatcher.dispatch_pending()

    assert world.txm.txs == [] and world.tasks.sent == []
    assert job(world.ledger, 1).state == JobState.CLOSED
    assert why in world.ledger.timeline(CHAIN, CONTRACT, 1)[-1].detail


@pytest.mark.parametrize("status, state", [(JobStatus.COMPLETED, JobState.COMPLETED),
                                           (JobStatus.CANCELLED, JobState.CLOSED),
                                           (JobStatus.NONE, JobState.CLOSED)])
def test_a_job_the_chain_ended_is_closed_instead_of_claimed(
        world: World, status: JobStatus, state: JobState) -> None:
    world.request(1)
    if status == JobStatus.NONE:
        del world.chain.jobs[1]
    else:
        world.chain.request(1, status=status)

    world.dispatcher.dispatch_pending()

    assert world.txm.txs == []
    assert job(world.ledger, 1).state == state


def test_a_job_whose_lease_another_operator_took_over_is_revoked(world: World) -> None:
    world.request(1)
    world.dispatcher.dispatch_pending()
    world.confirm_claim(1)
    world.dispatcher.dispatch_pending()
    dispatched = job(world.ledger, 1)
    reconciler = Reconciler(world.tasks, world.ledger, world.dispatcher, FakeEpoch(),
                            world.chain, CHAIN, operator=OPERATOR)
    reconciler.run()
    assert job(world.ledger, 1).state == JobState.DISPATCHED  # within its lease: left alone

    world.chain.timestamp = NOW + LEASE + 1  # our lease lapsed, and another operator took it
    world.chain.claimed(1, by=OTHER_OPERATOR)
    reconciler.run()

    assert job(world.ledger, 1).state == JobState.CLOSED
    assert world.tasks.revoked == [dispatched.task_id]


def test_with_three_operators_a_job_not_our_turn_waits_the_grace(world: World) -> None:
    world.chain.operators = 3  # we are index 1: job 3 is our turn ((3 mod 3) + 1), job 1 is not
    world.request(1)
    world.request(3)

    world.dispatcher.dispatch_pending()
    assert [tx.data.split(",")[0] for tx in world.txm.txs] == ["claimJob(3"]
    assert job(world.ledger, 1).state == JobState.REQUESTED and job(world.ledger, 1).not_before > 0

    set_fields(world.ledger, 1, created_at=time.time() - 10, not_before=0.0)  # the grace is over
    world.dispatcher.dispatch_pending()
    assert world.txm.txs[-1].data.startswith("claimJob(1,")


def test_the_operator_count_is_read_again_for_a_request_seen_after_it_was_read(
        world: World) -> None:
    """At start we read one operator (the others had not registered yet); a request seen after
    that is decided on the count read again, not the stale one that makes every job ours."""
    world.chain.operators = 1
    world.claims.standing()  # the bridge's read at start
    world.chain.operators = 3  # two more operators register
    world.request(1)  # not our turn with three operators

    world.dispatcher.dispatch_pending()

    assert world.txm.txs == []
    assert job(world.ledger, 1).not_before > 0
