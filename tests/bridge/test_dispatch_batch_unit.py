"""Batched dispatch: a batch is sent over one connection and recorded in one transaction, with
the same rows as one job at a time, and one job's failure (or an outage) still costs only what
it did when jobs were sent one by one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import kombu.exceptions
import pytest
import redis
from celery import Celery
from kombu.messaging import Producer

from bridge.dispatcher import Dispatcher
from bridge.isolation import OUTAGES
from bridge.ledger import Job, JobState, Ledger
from bridge.ports import CeleryTaskQueue
from protocol.messaging import EXECUTE_JOB, celery_config
from tests.bridge.fakes import (
    CHAIN,
    CID,
    CONTRACT,
    FakeBoard,
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


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return new_ledger(tmp_path)


@dataclass
class CountingTasks(FakeTasks):
    """Counts `sending()` batches; a send of a job in `broken` raises `error`."""

    batches: int = 0
    broken: set[str] = field(default_factory=set)
    error: Exception = field(default_factory=lambda: ValueError("cannot serialise"))

    @contextmanager
    def sending(self) -> Iterator[CountingTasks]:
        self.batches += 1
        yield self

    def send(self, task_id: str, queue: str, job_key: str, spec: str) -> None:
        if job_key in self.broken:
            raise self.error
        super().send(task_id, queue, job_key, spec)


def dispatcher(ledger: Ledger, tasks: FakeTasks, board: FakeBoard | None = None) -> Dispatcher:
    return Dispatcher(tasks, board or FakeBoard([node("node-a")]), ledger,
                      FakeEpoch("epoch-1"), CHAIN, CONTRACT)


def row(j: Job) -> tuple[object, ...]:
    return (j.state, j.attempts, j.task_id, j.broker_epoch, j.routed_node, j.started_at)


def test_a_batch_is_sent_in_one_pass_and_recorded_as_one_job_at_a_time_would_be(
        ledger: Ledger, tmp_path: Path) -> None:
    one_by_one = Ledger(f"sqlite:///{tmp_path / 'other.sqlite'}")
    board = FakeBoard([node("node-a"), node("node-b")], {"node-b": {CID: 5_000_000}})
    for target in (ledger, one_by_one):
        add_job(target, 1, ipfs_spec(CID))
        add_job(target, 2)
        add_job(target, 3, spec(resources={"cpu": 2}))
    tasks = CountingTasks()

    assert dispatcher(ledger, tasks, board).dispatch_pending() == 3

    assert tasks.batches == 1
    reference = dispatcher(one_by_one, FakeTasks(), board)
    for i in (1, 2, 3):
        reference.send(job(one_by_one, i), "epoch-1", nodes=board.nodes)
        assert row(job(ledger, i)) == row(job(one_by_one, i))
        assert ([(e.kind, e.detail) for e in ledger.timeline(CHAIN, CONTRACT, i)]
                == [(e.kind, e.detail) for e in one_by_one.timeline(CHAIN, CONTRACT, i)])
        assert ([(a.attempt, a.task_id) for a in ledger.attempts(CHAIN, CONTRACT, i)]
                == [(a.attempt, a.task_id) for a in one_by_one.attempts(CHAIN, CONTRACT, i)])
    assert job(ledger, 1).routed_node == "node-b"


def test_the_task_id_names_the_attempt_and_an_attempt_row_is_not_doubled(ledger: Ledger) -> None:
    added = add_job(ledger, 1)
    ledger.add_attempt(added, 1, f"{added.key}:1")  # recorded by a run that crashed after sending
    tasks = CountingTasks()

    dispatcher(ledger, tasks).dispatch_pending()

    assert [s.task_id for s in tasks.sent] == [f"{added.key}:1"]
    assert [a.task_id for a in ledger.attempts(CHAIN, CONTRACT, 1)] == [f"{added.key}:1"]


def test_a_job_whose_send_fails_does_not_stop_the_batch(ledger: Ledger) -> None:
    jobs = [add_job(ledger, i) for i in (1, 2, 3)]
    tasks = CountingTasks(broken={jobs[1].key})

    assert dispatcher(ledger, tasks).dispatch_pending() == 2

    assert [s.job_key for s in tasks.sent] == [jobs[0].key, jobs[2].key]
    assert [job(ledger, i).state for i in (1, 2, 3)] == [
        JobState.DISPATCHED, JobState.REQUESTED, JobState.DISPATCHED]
    failed = job(ledger, 2)
    assert failed.errors == 1 and failed.not_before > 0  # backed off, as any job error
    assert events(ledger, 2)[-1] == "error"


def test_an_outage_mid_batch_records_none_of_it_and_is_raised(ledger: Ledger) -> None:
    """A batched sender sends when the batch ends: after an outage nothing counts as sent, and
    the next pass sends the whole batch again under the same task ids."""
    jobs = [add_job(ledger, i) for i in (1, 2, 3)]
    tasks = CountingTasks(broken={jobs[1].key}, error=redis.ConnectionError("broker gone"))

    with pytest.raises(redis.ConnectionError):
        dispatcher(ledger, tasks).dispatch_pending()

    assert [job(ledger, i).state for i in (1, 2, 3)] == [JobState.REQUESTED] * 3
    assert job(ledger, 2).errors == 0  # an outage is nobody's fault

    tasks.broken.clear()
    dispatcher(ledger, tasks).dispatch_pending()
    assert [job(ledger, i).state for i in (1, 2, 3)] == [JobState.DISPATCHED] * 3
    assert [s.task_id for s in tasks.sent] == [f"{jobs[0].key}:1"] + [f"{j.key}:1" for j in jobs]


def test_hostile_and_unservable_jobs_are_settled_and_the_rest_sent(ledger: Ledger) -> None:
    add_job(ledger, 1, '{"image": ""}')
    add_job(ledger, 2, spec(inputs=[{"source": "ipfs://bafynotacid", "target": "/in"}]))
    add_job(ledger, 3, spec(resources={"gpu": 1}))
    add_job(ledger, 4)
    tasks = CountingTasks()

    dispatcher(ledger, tasks).dispatch_pending()

    assert [s.job_key for s in tasks.sent] == [job(ledger, 4).key]
    assert job(ledger, 1).state == job(ledger, 2).state == JobState.REJECTED
    assert "ipfs://CID" in (job(ledger, 2).reason or "")
    assert job(ledger, 3).state == JobState.REQUESTED  # waits for a GPU node


def test_a_batch_the_ledger_cannot_record_at_once_is_recorded_job_by_job(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in (1, 2):
        add_job(ledger, i)

    def broken(*_: object) -> None:
        raise RuntimeError("one row is odd")

    monkeypatch.setattr(ledger, "mark_dispatched_many", broken)
    dispatcher(ledger, CountingTasks()).dispatch_pending()

    assert [job(ledger, i).state for i in (1, 2)] == [JobState.DISPATCHED] * 2


def test_mark_dispatched_many_refuses_a_job_not_in_the_ledger(ledger: Ledger) -> None:
    present = add_job(ledger, 1)
    ghost = add_job(ledger, 2)
    with ledger.session() as s:
        s.delete(s.get(Job, (CHAIN, CONTRACT, 2)))

    with pytest.raises(AssertionError, match="vanished"):
        ledger.mark_dispatched_many([(present, 1, f"{present.key}:1", None, ""),
                                     (ghost, 1, f"{ghost.key}:1", None, "")], "e")

    assert job(ledger, 1).state == JobState.REQUESTED  # nothing of the batch was written


def test_a_redispatch_after_a_crash_reuses_the_task_id(ledger: Ledger) -> None:
    """Sent, then the bridge died before recording: the next pass sends the same task id."""
    added = add_job(ledger, 1)
    tasks = CountingTasks()
    dispatcher(ledger, tasks).dispatch_pending()
    set_fields(ledger, 1, state=JobState.REQUESTED, attempts=0)  # as if never recorded

    dispatcher(ledger, tasks).dispatch_pending()

    assert [s.task_id for s in tasks.sent] == [f"{added.key}:1"] * 2
    assert len(ledger.attempts(CHAIN, CONTRACT, 1)) == 1


def memory_app() -> Celery:
    app = Celery("cod-test")
    app.conf.update(celery_config("memory://"))
    app.conf.result_backend = "cache+memory://"
    return app


def test_celery_task_queue_sends_a_batch_through_one_producer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = memory_app()
    acquired: list[object] = []
    real = app.producer_or_acquire

    def counting(producer: object = None) -> object:
        acquired.append(producer)
        return real(producer)

    monkeypatch.setattr(app, "producer_or_acquire", counting)
    queue = CeleryTaskQueue(app)
    with queue.sending() as sender:
        for i in range(3):
            sender.send(f"t:{i}", "cod.cpu", f"k:{i}", '{"image": "x"}')

    assert acquired == [None]  # one producer for the whole batch
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        messages = [channel.basic_get("cod.cpu") for _ in range(3)]
    assert [(m.headers["id"], m.headers["task"]) for m in messages] == [
        (f"t:{i}", EXECUTE_JOB) for i in range(3)]
    assert [m.decode()[0] for m in messages] == [[f"k:{i}", '{"image": "x"}'] for i in range(3)]


def test_a_batched_task_is_the_message_send_task_sends() -> None:
    app = memory_app()
    queue = CeleryTaskQueue(app)
    spec_text = '{"image": "x", "env": {"A": "é"}}'
    queue.send("t:1", "cod.node.a", "k:1", spec_text)  # `send_task`
    with queue.sending() as sender:
        sender.send("t:1", "cod.node.a", "k:1", spec_text)

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        plain, batched = (channel.basic_get("cod.node.a") for _ in range(2))
    assert batched.headers == plain.headers
    assert batched.body == plain.body
    assert (batched.content_type, batched.content_encoding) == (plain.content_type,
                                                                plain.content_encoding)
    assert batched.delivery_info == plain.delivery_info
    tagless = [{k: v for k, v in m.properties.items() if k != "delivery_tag"}
               for m in (plain, batched)]
    assert tagless[0] == tagless[1]


def test_a_failed_batch_flush_is_raised_as_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    app = memory_app()

    @contextmanager
    def failing_batch(self: object, max_size: int = 0) -> Iterator[None]:
        yield
        raise kombu.exceptions.BatchPublishError("delivery is uncertain")

    monkeypatch.setattr(Producer, "batch", failing_batch)
    with pytest.raises(tuple(OUTAGES)), CeleryTaskQueue(app).sending() as sender:
        sender.send("t:1", "cod.cpu", "k:1", "{}")
