"""The reconciler's decisions, on a real ledger with a real dispatcher over fakes: what it sends
again (lost with the broker, stalled, its data node silent), what it gives up on, what it closes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.chain import JobStatus
from bridge.dispatcher import Dispatcher
from bridge.ledger import JobState
from bridge.reconciler import Reconciler
from tests.bridge.fakes import (
    CHAIN,
    CID,
    CONTRACT,
    FakeBoard,
    FakeChain,
    FakeEpoch,
    FakeTasks,
    add_job,
    events,
    ipfs_spec,
    job,
    new_ledger,
    node,
    set_fields,
    spec,
)

GRACE_S, LOCALITY_WAIT_S = 60.0, 30.0


class World:
    def __init__(self, tmp_path: Path, max_attempts: int = 3) -> None:
        self.ledger = new_ledger(tmp_path)
        self.tasks = FakeTasks()
        self.board = FakeBoard([node("node-a")], {"node-a": {CID: 100}})
        self.epoch = FakeEpoch("epoch-1")
        self.chain = FakeChain(timestamp=1_700_000_000)
        self.dispatcher = Dispatcher(self.tasks, self.board, self.ledger, self.epoch, CHAIN,
                                     CONTRACT, max_attempts=max_attempts)
        self.reconciler = Reconciler(self.tasks, self.ledger, self.dispatcher, self.epoch,
                                     self.chain, CHAIN, stall_grace_s=GRACE_S,
                                     max_attempts=max_attempts, interval_s=3600,
                                     locality_wait_s=LOCALITY_WAIT_S)

    def dispatch(self, job_id: int, job_spec: str = spec(timeout=10), **fields: object) -> None:
        add_job(self.ledger, job_id, job_spec, **fields)  # type: ignore[arg-type]
        self.dispatcher.dispatch_pending()
        assert job(self.ledger, job_id).state == JobState.DISPATCHED


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_jobs_lost_with_the_broker_epoch_are_dispatched_again(world: World) -> None:
    world.dispatch(1)
    world.epoch.value = "epoch-2"  # Redis restarted without its data
    world.dispatch(2)  # sent under the new epoch: still queued there

    world.reconciler.run()

    lost, kept = job(world.ledger, 1), job(world.ledger, 2)
    assert (lost.state, lost.attempts, lost.broker_epoch) == (JobState.DISPATCHED, 2, "epoch-2")
    assert [s.task_id for s in world.tasks.sent] == [f"{lost.key}:1", f"{kept.key}:1",
                                                     f"{lost.key}:2"]
    assert events(world.ledger, 1)[-2:] == ["redispatch", "queued"]
    assert (kept.attempts, kept.broker_epoch) == (1, "epoch-2")
    assert "redispatch" not in events(world.ledger, 2)


def test_a_stalled_job_is_dispatched_again(world: World) -> None:
    world.dispatch(1)
    world.dispatch(2)
    now = time.time()
    set_fields(world.ledger, 1, started_at=now - (10 + GRACE_S + 5), node="worker@a")
    set_fields(world.ledger, 2, started_at=now - (10 + GRACE_S - 5), node="worker@a")

    world.reconciler.run()

    stalled, running = job(world.ledger, 1), job(world.ledger, 2)
    assert (stalled.state, stalled.attempts, stalled.started_at) == (JobState.DISPATCHED, 2, None)
    assert running.attempts == 1
    assert running.started_at == pytest.approx(now - 10 - GRACE_S + 5)
    assert [s.task_id for s in world.tasks.sent][-1] == f"{stalled.key}:2"
    assert len(world.tasks.sent) == 3


def test_a_queued_job_that_never_started_is_not_a_stall(world: World) -> None:
    world.dispatch(1)
    set_fields(world.ledger, 1, dispatched_at=time.time() - 10_000)

    world.reconciler.run()

    assert job(world.ledger, 1).attempts == 1
    assert len(world.tasks.sent) == 1


def test_a_job_stalled_on_its_last_attempt_is_rejected(tmp_path: Path) -> None:
    world = World(tmp_path, max_attempts=1)
    world.dispatch(1)
    set_fields(world.ledger, 1, started_at=time.time() - 1000)

    world.reconciler.run()

    stored = job(world.ledger, 1)
    assert stored.state == JobState.REJECTED
    assert stored.reason is not None and stored.reason.startswith("gave up after 1 attempts")
    assert len(world.tasks.sent) == 1


def test_a_job_its_data_node_does_not_start_goes_to_any_node(world: World) -> None:
    world.dispatch(1, ipfs_spec(CID))
    world.dispatch(2, ipfs_spec(CID))
    first = job(world.ledger, 1)
    assert first.routed_node == "node-a"
    set_fields(world.ledger, 1, dispatched_at=time.time() - LOCALITY_WAIT_S - 1)

    world.reconciler.run()

    moved = job(world.ledger, 1)
    assert world.board.superseded == [f"{first.key}:1"]
    assert (moved.attempts, moved.routed_node) == (2, None)
    assert [s.queue for s in world.tasks.sent] == ["cod.node.node-a", "cod.node.node-a",
                                                  "cod.cpu"]
    assert "re-routed" in events(world.ledger, 1)
    assert job(world.ledger, 2).attempts == 1  # still within its wait


def test_a_job_cancelled_on_chain_after_its_deadline_is_closed_and_revoked(world: World) -> None:
    world.chain.timestamp = 5_000
    world.dispatch(1, deadline=4_000)
    world.dispatch(2, deadline=4_000)
    world.dispatch(3, deadline=9_000)  # before its deadline: the chain is not asked
    world.chain.request(1, status=JobStatus.CANCELLED, deadline=4_000)
    world.chain.request(2, deadline=4_000)  # still requested: worked on as before

    world.reconciler.run()

    closed = job(world.ledger, 1)
    assert closed.state == JobState.CLOSED
    assert world.tasks.revoked == [closed.task_id]
    assert events(world.ledger, 1)[-1] == "closed"
    assert [job(world.ledger, i).state for i in (2, 3)] == [JobState.DISPATCHED] * 2
    assert world.chain.reads == 2


def test_maybe_run_runs_once_per_interval(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [10_000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    world.dispatch(1)
    world.epoch.value = "epoch-2"

    world.reconciler.maybe_run()
    world.epoch.value = "epoch-3"
    clock[0] += 3599
    world.reconciler.maybe_run()  # within the interval: nothing
    assert (job(world.ledger, 1).attempts, job(world.ledger, 1).broker_epoch) == (2, "epoch-2")

    clock[0] += 1
    world.reconciler.maybe_run()
    assert (job(world.ledger, 1).attempts, job(world.ledger, 1).broker_epoch) == (3, "epoch-3")
