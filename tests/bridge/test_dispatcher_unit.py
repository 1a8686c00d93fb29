"""The dispatcher's decisions, on a real ledger with a fake task queue and node board: where a job
is sent, how long it waits for a node, which results count, and how often a job is run again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.dispatcher import WAIT_RECHECK_S, Dispatcher
from bridge.ledger import JobState, Ledger
from tests.bridge.fakes import (
    CHAIN,
    CID,
    CONTRACT,
    OTHER_CID,
    FakeBoard,
    FakeEpoch,
    FakeTasks,
    NodeKey,
    Sent,
    add_job,
    events,
    ipfs_spec,
    job,
    new_ledger,
    node,
    set_fields,
    spec,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return new_ledger(tmp_path)


@pytest.fixture
def key() -> NodeKey:
    return NodeKey()


def dispatcher(ledger: Ledger, tasks: FakeTasks, board: FakeBoard, key: NodeKey | None = None,
               **kwargs: object) -> Dispatcher:
    trusted = frozenset({key.address}) if key else frozenset()
    return Dispatcher(tasks, board, ledger, FakeEpoch("epoch-1"), CHAIN, CONTRACT,
                      trusted_nodes=trusted, **kwargs)  # type: ignore[arg-type]


def attempts(ledger: Ledger, job_id: int) -> list[tuple[int, str, str | None]]:
    return [(a.attempt, a.task_id, a.error) for a in ledger.attempts(CHAIN, CONTRACT, job_id)]


# -- dispatch --------------------------------------------------------------------------------------


def test_a_job_is_sent_to_the_node_holding_its_data(ledger: Ledger) -> None:
    tasks = FakeTasks()
    board = FakeBoard([node("node-a"), node("node-b")],
                      {"node-a": {OTHER_CID: 10}, "node-b": {CID: 5_000_000}})
    added = add_job(ledger, 1, ipfs_spec(CID))

    assert dispatcher(ledger, tasks, board).dispatch_pending() == 1

    assert tasks.sent == [Sent(f"{added.key}:1", "cod.node.node-b", added.key, added.spec)]
    stored = job(ledger, 1)
    assert (stored.state, stored.attempts, stored.task_id, stored.broker_epoch,
            stored.routed_node) == (JobState.DISPATCHED, 1, f"{added.key}:1", "epoch-1", "node-b")
    assert attempts(ledger, 1) == [(1, f"{added.key}:1", None)]


@pytest.mark.parametrize("held, locality", [({}, True), ({"node-a": {CID: 5}}, False)],
                         ids=["no-node-holds-it", "locality-off"])
def test_a_job_goes_to_its_class_queue_when_no_node_is_chosen_for_its_data(
        ledger: Ledger, held: dict[str, dict[str, int]], locality: bool) -> None:
    tasks = FakeTasks()
    board = FakeBoard([node("node-a", "cod.cpu", "cod.highmem", cpus=16, memory=32 * 2**30)],
                      held)
    add_job(ledger, 1, ipfs_spec(CID))
    big = add_job(ledger, 2, spec(resources={"cpu": 8}))

    assert dispatcher(ledger, tasks, board, locality=locality).dispatch_pending() == 2

    assert [s.queue for s in tasks.sent] == ["cod.cpu", "cod.highmem"]
    assert tasks.sent[1].task_id == f"{big.key}:1"
    assert [job(ledger, i).routed_node for i in (1, 2)] == [None, None]
    assert {job(ledger, i).state for i in (1, 2)} == {JobState.DISPATCHED}


def test_an_invalid_spec_is_rejected_without_using_a_node(ledger: Ledger) -> None:
    tasks = FakeTasks()
    add_job(ledger, 1, '{"image": ""}')

    dispatcher(ledger, tasks, FakeBoard([node("node-a")])).dispatch_pending()

    assert tasks.sent == []
    stored = job(ledger, 1)
    assert stored.state == JobState.REJECTED and stored.reason
    assert events(ledger, 1) == ["requested", "rejected"]


def test_a_job_no_node_can_serve_waits_then_expires(ledger: Ledger) -> None:
    tasks = FakeTasks()
    board = FakeBoard([node("node-a", "cod.cpu")])  # no GPU anywhere
    add_job(ledger, 1, spec(resources={"gpu": 1}, queue_timeout=60))
    add_job(ledger, 2)  # servable: not held back by job 1
    d = dispatcher(ledger, tasks, board)

    before = time.time()
    d.dispatch_pending()
    assert [s.queue for s in tasks.sent] == ["cod.cpu"]
    waiting = job(ledger, 1)
    assert waiting.state == JobState.REQUESTED
    assert waiting.not_before >= before + WAIT_RECHECK_S
    assert events(ledger, 1) == ["requested", "waiting"]

    set_fields(ledger, 1, not_before=0.0)  # looked at again, same reason: no second event
    d.dispatch_pending()
    assert job(ledger, 1).state == JobState.REQUESTED
    assert events(ledger, 1) == ["requested", "waiting"]

    set_fields(ledger, 1, not_before=0.0, created_at=time.time() - 61)  # past its queue timeout
    d.dispatch_pending()
    expired = job(ledger, 1)
    assert expired.state == JobState.REJECTED
    assert expired.reason is not None and "queue timeout of 60 s" in expired.reason
    assert expired.not_before == 0.0  # settled at once
    assert len(tasks.sent) == 1


def test_a_waiting_job_is_sent_once_a_node_that_can_serve_it_appears(ledger: Ledger) -> None:
    tasks = FakeTasks()
    board = FakeBoard([])
    add_job(ledger, 1)
    d = dispatcher(ledger, tasks, board)
    d.dispatch_pending()
    assert tasks.sent == [] and job(ledger, 1).state == JobState.REQUESTED

    board.nodes.append(node("node-a"))
    set_fields(ledger, 1, not_before=0.0)
    d.dispatch_pending()
    assert [s.queue for s in tasks.sent] == ["cod.cpu"]
    assert job(ledger, 1).state == JobState.DISPATCHED


def test_reroute_marks_the_task_superseded_and_sends_to_the_class_queue(ledger: Ledger) -> None:
    tasks = FakeTasks()
    board = FakeBoard([node("node-a")], {"node-a": {CID: 100}})
    add_job(ledger, 1, ipfs_spec(CID))
    d = dispatcher(ledger, tasks, board)
    d.dispatch_pending()
    first = job(ledger, 1)

    d.reroute(first, "epoch-1", "node-a is silent")

    assert board.superseded == [f"{first.key}:1"]
    assert [s.queue for s in tasks.sent] == ["cod.node.node-a", "cod.cpu"]
    after = job(ledger, 1)
    assert (after.attempts, after.routed_node, after.task_id) == (2, None, f"{first.key}:2")
    assert "re-routed" in events(ledger, 1)


# -- collect ---------------------------------------------------------------------------------------


def dispatched(ledger: Ledger, tasks: FakeTasks, d: Dispatcher, job_id: int = 1) -> str:
    add_job(ledger, job_id)
    d.dispatch_pending()
    task_id = job(ledger, job_id).task_id
    assert task_id is not None
    return task_id


def test_a_result_signed_by_a_registered_node_is_recorded_as_executed(ledger: Ledger,
                                                                       key: NodeKey) -> None:
    tasks = FakeTasks()
    d = dispatcher(ledger, tasks, FakeBoard([node("node-a")]), key)
    task_id = dispatched(ledger, tasks, d)
    result = tasks.finish(task_id, "SUCCESS", key.outcome(task_id, job(ledger, 1), exit_code=3,
                                                          duration_s=2.5),
                          info={"hostname": "worker@a"})

    assert d.collect() == 1

    stored = job(ledger, 1)
    assert (stored.state, stored.result_cid, stored.exit_code, stored.node) == (
        JobState.EXECUTED, CID, 3, "node-a")
    assert stored.started_at is not None
    assert result.forgotten
    assert events(ledger, 1)[-3:] == ["running", "attested", "published"]
    (attempt,) = ledger.attempts(CHAIN, CONTRACT, 1)
    assert (attempt.result_cid, attempt.exit_code, attempt.duration_s, attempt.error) == (
        CID, 3, 2.5, None)


def test_collecting_pushed_tasks_looks_at_those_jobs_only(ledger: Ledger, key: NodeKey) -> None:
    tasks = FakeTasks()
    d = dispatcher(ledger, tasks, FakeBoard([node("node-a")]), key)
    first, second = dispatched(ledger, tasks, d, 1), dispatched(ledger, tasks, d, 2)
    for task_id, job_id in ((first, 1), (second, 2)):
        tasks.finish(task_id, "SUCCESS", key.outcome(task_id, job(ledger, job_id)))

    assert d.collect({second, "a-task-of-no-job"}) == 1  # the push named the second one only
    assert (job(ledger, 1).state, job(ledger, 2).state) == (JobState.DISPATCHED,
                                                            JobState.EXECUTED)
    assert d.collect(set()) == 0
    assert d.collect() == 1  # the sweep finds the first one all the same
    assert job(ledger, 1).state == JobState.EXECUTED


def test_a_signed_failed_outcome_rejects_the_job_with_its_reason(ledger: Ledger,
                                                                 key: NodeKey) -> None:
    tasks = FakeTasks()
    d = dispatcher(ledger, tasks, FakeBoard([node("node-a")]), key)
    task_id = dispatched(ledger, tasks, d)
    tasks.finish(task_id, "SUCCESS", key.outcome(task_id, job(ledger, 1), status="failed",
                                                 result_cid=None, exit_code=None,
                                                 reason="image not found"))

    assert d.collect() == 1

    stored = job(ledger, 1)
    assert (stored.state, stored.reason) == (JobState.REJECTED, "image not found")
    assert len(tasks.sent) == 1  # the job's own failure: not run again


def test_a_started_task_is_noted_and_left_dispatched(ledger: Ledger) -> None:
    tasks = FakeTasks()
    d = dispatcher(ledger, tasks, FakeBoard([node("node-a")]))
    task_id = dispatched(ledger, tasks, d)
    result = tasks.finish(task_id, "STARTED", info={"hostname": "worker@a"})

    assert d.collect() == 0
    assert d.collect() == 0  # noted once

    stored = job(ledger, 1)
    assert (stored.state, stored.node) == (JobState.DISPATCHED, "worker@a")
    assert stored.started_at is not None
    assert events(ledger, 1).count("running") == 1
    assert not result.forgotten


@pytest.mark.parametrize("forge", ["unsigned", "stranger", "other-task"])
def test_an_untrusted_result_is_sent_again_then_the_job_rejected(ledger: Ledger, key: NodeKey,
                                                                  forge: str) -> None:
    tasks = FakeTasks()
    board = FakeBoard([node("node-a")], {"node-a": {CID: 100}})
    d = dispatcher(ledger, tasks, board, key, max_attempts=2)
    add_job(ledger, 1, ipfs_spec(CID))
    d.dispatch_pending()

    def forged(task_id: str) -> dict[str, object]:
        outcome = key.outcome(f"{task_id}x" if forge == "other-task" else task_id, job(ledger, 1))
        if forge == "unsigned":
            del outcome["signature"]
        elif forge == "stranger":
            outcome = NodeKey().outcome(task_id, job(ledger, 1))
        return outcome

    first = job(ledger, 1).task_id
    assert first is not None
    tasks.finish(first, "SUCCESS", forged(first))
    assert d.collect() == 1

    again = job(ledger, 1)
    assert (again.state, again.attempts, again.result_cid) == (JobState.DISPATCHED, 2, None)
    assert [s.queue for s in tasks.sent] == ["cod.node.node-a", "cod.cpu"]  # not near the data
    assert "untrusted-result" in events(ledger, 1)

    second = again.task_id
    assert second is not None and second != first
    tasks.finish(second, "SUCCESS", forged(second))
    assert d.collect() == 1

    final = job(ledger, 1)
    assert (final.state, final.reason) == (JobState.REJECTED,
                                          "no result signed by a registered node")
    assert final.result_cid is None
    assert len(tasks.sent) == 2
    errors = [e for _, _, e in attempts(ledger, 1)]
    assert all(e is not None and e.startswith("untrusted result: ") for e in errors), errors


def test_an_unregistered_superseded_outcome_does_not_count(ledger: Ledger, key: NodeKey) -> None:
    tasks = FakeTasks()
    d = dispatcher(ledger, tasks, FakeBoard([node("node-a")]), key)
    task_id = dispatched(ledger, tasks, d)
    tasks.finish(task_id, "SUCCESS", key.outcome(task_id, job(ledger, 1), status="superseded",
                                                 result_cid=None, exit_code=None))

    d.collect()

    stored = job(ledger, 1)
    assert (stored.state, stored.attempts) == (JobState.DISPATCHED, 2)
    (first, _) = attempts(ledger, 1)
    assert first[2] is not None and "not re-routed" in first[2]


def test_a_crashed_task_is_retried_up_to_max_attempts_then_rejected(ledger: Ledger) -> None:
    tasks = FakeTasks()
    d = dispatcher(ledger, tasks, FakeBoard([node("node-a")]), max_attempts=3)
    dispatched(ledger, tasks, d)

    for attempt in (1, 2, 3):
        current = job(ledger, 1)
        assert (current.state, current.attempts) == (JobState.DISPATCHED, attempt)
        assert current.task_id is not None
        result = tasks.finish(current.task_id, "FAILURE", RuntimeError("worker lost"))
        assert d.collect() == 1
        assert result.forgotten

    final = job(ledger, 1)
    assert final.state == JobState.REJECTED
    assert final.reason == "executor error: RuntimeError: worker lost"
    assert len(tasks.sent) == 3
    assert [a for a, _, _ in attempts(ledger, 1)] == [1, 2, 3]
    assert {e for _, _, e in attempts(ledger, 1)} == {"executor error: RuntimeError: worker lost"}
    assert events(ledger, 1).count("executor-error") == 2


def test_a_pending_task_is_left_alone(ledger: Ledger) -> None:
    tasks = FakeTasks()
    d = dispatcher(ledger, tasks, FakeBoard([node("node-a")]))
    task_id = dispatched(ledger, tasks, d)

    assert d.collect() == 0

    assert job(ledger, 1).state == JobState.DISPATCHED
    assert not tasks.results[task_id].forgotten
    assert len(tasks.sent) == 1
